r"""2-D convolution (torch's cross-correlation), max and average pooling, forward and backward.

Layout as in torch: inputs ``(N, C, H, W)``, conv weights ``(O, C / groups, kh, kw)``. Sizes
(``stride``, ``padding``, ``dilation``, ``kernel_size``) are an int or an ``(h, w)`` pair. The
output side is :math:`H_o = \lfloor (H + 2p - d(k - 1) - 1) / s \rfloor + 1`.

Convolution runs as im2col: a strided view of the padded input gathers, for every kernel offset
:math:`(i, j)` and channel, the input pixels each output pixel sees, and one matrix product
(batched over groups) does the rest in each direction. The inverse, col2im, adds the columns back
kernel offset by kernel offset (``kh * kw`` strided slice additions, no ``np.add.at``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._arrays import as_float


def _wide(a: np.ndarray) -> np.ndarray:
    """float16 computes in float32 (as torch does on the CPU): its squares and sums overflow at 65504."""
    return a.astype(np.float32) if a.dtype.itemsize < 4 else a

Size = int | Sequence[int]


def _pair(v: Size, name: str) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    pair = tuple(int(s) for s in v)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return pair[0], pair[1]


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _geometry(x_shape: tuple[int, ...], kernel: tuple[int, int], stride: Size, padding: Size,
              dilation: Size) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validated (stride, padding, dilation, output size)."""
    if len(x_shape) != 4:
        raise ValueError(f"expected an input of shape (N, C, H, W), got {x_shape}")
    s, p, d = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(kernel) < 1:
        raise ValueError(f"invalid kernel {kernel}, stride {s}, padding {p} or dilation {d}")
    out = tuple(_out_size(x_shape[2 + a], kernel[a], s[a], p[a], d[a]) for a in range(2))
    if min(out) < 1:
        raise ValueError(f"input {x_shape} is too small for kernel {kernel} with padding {p} and dilation {d}")
    return s, p, d, out  # type: ignore[return-value]


def _pad(x: np.ndarray, p: tuple[int, int], value: float = 0.0) -> np.ndarray:
    if p == (0, 0):
        return x
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=value)


def _windows(x: np.ndarray, kernel: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
             d: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """A view ``(C, kh, kw, N, Ho, Wo)`` of the zero-padded input, channels first: element
    ``[c, i, j, n, y, x]`` is ``x_pad[n, c, y * s_h + i * d_h, x * s_w + j * d_w]``.

    The padded copy is laid out ``(C, N, Hp, Wp)`` (one pass does the padding and the transpose), so
    copying the view into columns reads whole rows.
    """
    n, c, h, w = x.shape
    xp = np.zeros((c, n, h + 2 * p[0], w + 2 * p[1]), dtype=x.dtype)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x.transpose(1, 0, 2, 3)
    sc, sn, sh, sw = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, shape=(c, *kernel, n, *out), strides=(sc, sh * d[0], sw * d[1], sn, sh * s[0], sw * s[1]),
        writeable=False)


def _slices(i: int, j: int, s: tuple[int, int], d: tuple[int, int],
            out: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the padded input that kernel offset ``(i, j)`` reads, one per output pixel."""
    return (slice(i * d[0], i * d[0] + s[0] * (out[0] - 1) + 1, s[0]),
            slice(j * d[1], j * d[1] + s[1] * (out[1] - 1) + 1, s[1]))


def _col2im(cols: np.ndarray, x_shape: tuple[int, ...], p: tuple[int, int], s: tuple[int, int],
            d: tuple[int, int]) -> np.ndarray:
    """Adjoint of im2col: ``cols`` ``(C, kh, kw, N, Ho, Wo)`` added back onto an ``(N, C, H, W)`` input.

    Each kernel offset reads a strided slice of the padded input; the adjoint adds into that same
    slice. Within one offset the slice's positions are distinct, so a plain ``+=`` is exact.
    """
    c, kh, kw, n, ho, wo = cols.shape
    h, w = x_shape[2], x_shape[3]
    acc = np.zeros((c, n, h + 2 * p[0], w + 2 * p[1]), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _slices(i, j, s, d, (ho, wo))
            acc[:, :, rows, columns] += cols[:, i, j]
    return acc[:, :, p[0]:p[0] + h, p[1]:p[1] + w].transpose(1, 0, 2, 3)


def _im2col(x: np.ndarray, kernel: tuple[int, int], s: tuple[int, int], p: tuple[int, int], d: tuple[int, int],
            out: tuple[int, int], groups: int) -> np.ndarray:
    """Columns ``(groups, C/groups * kh * kw, N * Ho * Wo)``: one row per (channel, kernel offset)."""
    cols = np.array(_windows(x, kernel, s, p, d, out), order="C", copy=True)  # fresh, writeable
    return cols.reshape(groups, -1, x.shape[0] * out[0] * out[1])


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: Size = 1, padding: Size = 0,
           dilation: Size = 1, groups: int = 1) -> np.ndarray:
    r"""``torch.nn.functional.conv2d``: a cross-correlation,

    .. math::
        y_{n,o,y,x} = b_o + \sum_{c \in g(o)} \sum_{i,j} W_{o,c,i,j}\,
            x^{\text{pad}}_{n,c,\,y s_h + i d_h,\,x s_w + j d_w}.
    """
    x, weight = as_float(x), as_float(weight)
    dtype = np.result_type(x, weight)
    o, cg, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != cg * groups or o % groups:
        raise ValueError(f"x of shape {x.shape} does not fit weight of shape {weight.shape} with groups={groups}")
    s, p, d, out = _geometry(x.shape, (kh, kw), stride, padding, dilation)
    cols = _im2col(_wide(x), (kh, kw), s, p, d, out, groups)
    y = _wide(weight).reshape(groups, o // groups, -1) @ cols  # (G, O/G, N*Ho*Wo): the one GEMM
    y = y.reshape(o, x.shape[0], *out).transpose(1, 0, 2, 3)
    if bias is not None:
        y = y + as_float(bias).reshape(1, o, 1, 1)
    return np.ascontiguousarray(y, dtype=dtype)


def conv2d_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, has_bias: bool = True, stride: Size = 1,
    padding: Size = 0, dilation: Size = 1, groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    r"""Gradients of a loss :math:`L` through :func:`conv2d`.

    Written with columns :math:`X_{\text{col}}` (rows: channel and kernel offset; columns: batch and
    output pixel), the forward pass is the matrix product :math:`Y = W X_{\text{col}}` per group, so as
    for a linear layer

    .. math::
        G_W = G_Y X_{\text{col}}^\top
            \;\Leftrightarrow\; \frac{\partial L}{\partial W_{o,c,i,j}}
            = \sum_{n,y,x} \frac{\partial L}{\partial y_{n,o,y,x}}\,
              x^{\text{pad}}_{n,c,\,y s_h + i d_h,\,x s_w + j d_w},

    the *correlation* of the input with the upstream gradient, evaluated at the same offsets as the
    forward pass (a convolution would flip the kernel: :math:`W_{o,c,k_h-1-i,k_w-1-j}`).
    For the input, :math:`G_{X_{\text{col}}} = W^\top G_Y`, and each column entry is added back to
    the pixel it was read from (col2im, the adjoint of the strided gather):

    .. math::
        \frac{\partial L}{\partial x_{n,c,u,v}} = \sum_{o,i,j,\;y s_h + i d_h = u + p_h,\;x s_w + j d_w = v + p_w}
            W_{o,c,i,j}\, \frac{\partial L}{\partial y_{n,o,y,x}},

    so the stride spaces the upstream gradient out (a stride-1 placement puts it at the wrong
    pixels) and the padding is cropped off. Finally :math:`\partial L/\partial b_o = \sum_{n,y,x}
    \partial L/\partial y_{n,o,y,x}`.

    Returns ``(grad_x, grad_weight, grad_bias)``; ``grad_bias`` is None when ``has_bias`` is false.
    """
    grad_out, x, weight = as_float(grad_out), as_float(x), as_float(weight)
    o, _, kh, kw = weight.shape
    s, p, d, out = _geometry(x.shape, (kh, kw), stride, padding, dilation)
    n = x.shape[0]
    if grad_out.shape != (n, o, *out):
        raise ValueError(f"grad_out has shape {grad_out.shape}, the output has {(n, o, *out)}")
    dtype = np.result_type(grad_out, x, weight)
    g = np.ascontiguousarray(_wide(grad_out).transpose(1, 0, 2, 3)).reshape(groups, o // groups, -1)  # (G, O/G, N*P)
    cols = _im2col(_wide(x), (kh, kw), s, p, d, out, groups)
    w = _wide(weight).reshape(groups, o // groups, -1)
    # (cols @ g^T)^T, not g @ cols^T: OpenBLAS is an order of magnitude slower with the short
    # side (O) as the rows of a product summed over N * Ho * Wo.
    grad_weight = (cols @ g.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(weight.shape)
    # The columns are spent: the input's column gradient (same shape) reuses their memory, which
    # saves touching 9 * C * N * Ho * Wo fresh values (page faults cost as much as the GEMM here).
    spare = cols if cols.dtype == np.result_type(w, g) else None
    grad_cols = np.matmul(w.transpose(0, 2, 1), g, out=spare).reshape(x.shape[1], kh, kw, n, *out)
    grad_x = _col2im(grad_cols, x.shape, p, s, d)
    grad_bias = _wide(grad_out).sum(axis=(0, 2, 3)).astype(dtype, copy=False) if has_bias else None
    return (np.ascontiguousarray(grad_x, dtype=dtype), grad_weight.astype(dtype, copy=False), grad_bias)


def _pool_geometry(x: np.ndarray, kernel_size: Size, stride: Size | None,
                   padding: Size) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (not isinstance(stride, int | np.integer) and len(stride) == 0) else _pair(
        stride, "stride")
    p = _pair(padding, "padding")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} should be at most half the kernel size {k}")
    s, p, _, out = _geometry(x.shape, k, s, p, 1)
    return k, s, p, out


def max_pool2d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> np.ndarray:
    r"""``torch.nn.functional.max_pool2d`` (no dilation, floor mode): the largest element of each window,
    padding counted as :math:`-\infty`. ``stride`` defaults to ``kernel_size``."""
    return _max_and_argmax(as_float(x), kernel_size, stride, padding)[0]


def _max_and_argmax(x: np.ndarray, kernel_size: Size, stride: Size | None,
                    padding: Size) -> tuple[np.ndarray, np.ndarray]:
    """Each window's maximum and the offset ``i * kw + j`` of its *first* maximum in row-major scan order.

    As torch does, a NaN is a maximum (the window's value is NaN, its offset the last NaN's).
    """
    k, s, p, out = _pool_geometry(x, kernel_size, stride, padding)
    xp = _pad(x, p, -np.inf)
    best = np.full((*x.shape[:2], *out), -np.inf, dtype=x.dtype)
    where = np.zeros(best.shape, dtype=np.uint8 if k[0] * k[1] <= 256 else np.intp)
    for i in range(k[0]):
        for j in range(k[1]):
            v = xp[(..., *_slices(i, j, s, (1, 1), out))]
            larger = v > best  # strict: a tie keeps the earlier offset, as torch does
            larger |= np.isnan(v)
            # Offsets grow along the scan, so "the offset where larger, else unchanged" is a maximum;
            # arithmetic instead of masked writes, which branch on random data and run 5x slower.
            np.maximum(where, larger * where.dtype.type(i * k[1] + j), out=where)
            np.maximum(best, v, out=best)  # NaN-propagating, as the scan above
    return best, where


def max_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, kernel_size: Size, stride: Size | None = None,
                        padding: Size = 0) -> np.ndarray:
    r"""Gradient of a loss :math:`L` through :func:`max_pool2d` with respect to ``x``.

    Each output is :math:`y = x_{a}` where :math:`a` is the window's argmax, so
    :math:`\partial y/\partial x_u = [u = a]` and

    .. math::
        \frac{\partial L}{\partial x_u} = \sum_{\text{windows } w:\ a(w) = u} \frac{\partial L}{\partial y_w},

    summed because overlapping windows (stride below the kernel) may share their maximum. Where a
    window holds tied maxima the max is not differentiable (a kink: raising either tied element
    raises the output); torch's convention, followed here, routes the gradient to the first maximum
    in the window's row-major scan only, never to every tied element.
    """
    x, grad_out = as_float(x), as_float(grad_out)
    k, s, p, out = _pool_geometry(x, kernel_size, stride, padding)
    _, where = _max_and_argmax(x, kernel_size, stride, padding)
    acc = np.zeros((*x.shape[:2], x.shape[2] + 2 * p[0], x.shape[3] + 2 * p[1]), dtype=np.result_type(grad_out, x))
    # grad * [offset is the argmax] routes each gradient; a NaN or Inf gradient must reach its argmax
    # only (0 * Inf is NaN), so then the slower selection is used.
    finite = bool(np.isfinite(np.sum(grad_out)))  # (the selection keeps NaN and Inf off the other offsets)
    for i in range(k[0]):
        for j in range(k[1]):
            chosen = where == i * k[1] + j
            acc[(..., *_slices(i, j, s, (1, 1), out))] += grad_out * chosen if finite else np.where(chosen, grad_out, 0)
    return np.ascontiguousarray(acc[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]])


def avg_pool2d(x: np.ndarray, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> np.ndarray:
    r"""``torch.nn.functional.avg_pool2d`` with ``count_include_pad=True`` (torch's default): each window's
    sum over :math:`k_h k_w`, padded zeros included. ``stride`` defaults to ``kernel_size``."""
    x = as_float(x)
    k, s, p, out = _pool_geometry(x, kernel_size, stride, padding)
    xp = _pad(_wide(x), p)
    total = np.zeros((*x.shape[:2], *out), dtype=xp.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            total += xp[(..., *_slices(i, j, s, (1, 1), out))]
    return (total / (k[0] * k[1])).astype(x.dtype, copy=False)


def avg_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, kernel_size: Size, stride: Size | None = None,
                        padding: Size = 0) -> np.ndarray:
    r"""Gradient of a loss :math:`L` through :func:`avg_pool2d` with respect to ``x``.

    :math:`y_w = \frac{1}{k_h k_w}\sum_{u \in w} x_u` (padding included in the count), so every input
    receives :math:`\frac{1}{k_h k_w}` of the upstream gradient of each window that contains it:

    .. math::
        \frac{\partial L}{\partial x_u} = \frac{1}{k_h k_w} \sum_{w \ni u} \frac{\partial L}{\partial y_w};

    the share that falls on padding is dropped.
    """
    x, grad_out = as_float(x), as_float(grad_out)
    k, s, p, out = _pool_geometry(x, kernel_size, stride, padding)
    dtype = np.result_type(grad_out, x)
    share = (grad_out / dtype.type(k[0] * k[1])).astype(dtype, copy=False)
    acc = np.zeros((*x.shape[:2], x.shape[2] + 2 * p[0], x.shape[3] + 2 * p[1]), dtype=dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            acc[(..., *_slices(i, j, s, (1, 1), out))] += share
    return np.ascontiguousarray(acc[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]])
