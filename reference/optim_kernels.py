r"""The update kernels of SGD, Adam/AdamW, RMSprop, Adagrad, Adadelta, Adamax, NAdam and RAdam, and their
primitives, in torch.optim's order of operations.

Each kernel updates ``param`` and its state arrays in place, for one parameter (or one
contiguous block of it) and one step, and never modifies ``grad``. Scalars that depend only
on the step (bias corrections, NAdam's momentum schedule) are computed by the caller, once
per parameter, as torch does. ``scratch`` arrays are preallocated buffers shaped like
``param``; they are overwritten. Products with a scalar follow torch's kernels:
``addcmul(t1, t2, value=s)`` is ``(s * t1) * t2`` and ``addcdiv(t1, t2, value=s)`` is
``s * (t1 / t2)``.
"""

from __future__ import annotations

import numpy as np


def _decayed(grad: np.ndarray, param: np.ndarray, weight_decay: float, maximize: bool,
             out: np.ndarray) -> np.ndarray:
    """``-grad`` when maximizing, then plus the L2 term ``weight_decay * param``; ``grad`` untouched."""
    if not maximize and weight_decay == 0:
        return grad
    if maximize:
        np.negative(grad, out=out)
    else:
        np.copyto(out, grad)
    if weight_decay != 0:
        out += weight_decay * param
    return out


def _weight_decayed(grad: np.ndarray, param: np.ndarray, *, lr: float, weight_decay: float, decoupled: bool,
                    maximize: bool, out: np.ndarray) -> np.ndarray:
    r"""The gradient a step uses, as :func:`_decayed` gives it; decoupled weight decay instead shrinks ``param`` in
    place, :math:`\theta \leftarrow (1 - \eta\lambda)\theta`, and leaves the gradient alone."""
    if decoupled and weight_decay != 0:
        param *= 1 - lr * weight_decay
        return _decayed(grad, param, 0.0, maximize, out)
    return _decayed(grad, param, weight_decay, maximize, out)


def _ema_sq_(avg: np.ndarray, grad: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """``avg = decay * avg + (1 - decay) * grad**2`` as ``mul_(decay).addcmul_(g, g, value=1 - decay)``."""
    avg *= decay
    np.multiply(grad, 1 - decay, out=scratch)
    scratch *= grad
    avg += scratch


def lerp_(start: np.ndarray, end: np.ndarray, weight: float, scratch: np.ndarray) -> None:
    """``start += weight * (end - start)`` as torch's ``lerp_`` computes it (two forms split at 0.5)."""
    np.subtract(end, start, out=scratch)
    if weight < 0.5:
        scratch *= weight
        start += scratch
    else:
        scratch *= weight - 1
        np.add(end, scratch, out=start)


def fused_sub_square(a: np.ndarray, b: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    r"""``a - b * b`` rounded once, as torch's ``a.addcmul(b, b, value=-1)`` computes it (a fused multiply-add).

    The difference matters where it cancels: centered RMSprop's :math:`v - \bar g^2` of a
    steady gradient is a rounding residual, which a separately rounded :math:`b^2` turns into
    exactly 0 and the fused form into a small number of either sign (and torch's square root
    into NaN). float16/float32: :math:`b^2` and the difference are exact or nearly so in float64,
    then rounded once to float32 (float16 results then to float16, as torch's float32 opmath
    does). float64: Dekker's exact product :math:`b^2 = p + e`; where :math:`a` and :math:`p`
    are within a factor 2, :math:`a - p` is exact (Sterbenz) and one rounding remains.
    """
    if a.dtype != np.float64:
        wide = np.multiply(b, b, dtype=np.float64)
        np.subtract(a, wide, out=wide)
        _fused_into(out, wide)
        return out
    split = b * 134217729.0  # 2**27 + 1: high and low halves of b, 26 bits each
    high = split - (split - b)
    low = b - high
    np.multiply(b, b, out=out)  # p
    err = high * high - out
    err += 2 * high * low
    err += low * low  # e = b*b - p exactly
    np.subtract(a, out, out=out)
    out -= err
    return out


def _fused_into(out: np.ndarray, value: np.ndarray) -> None:
    """Round a float64 result once to float32 (torch's opmath for float32 and float16), then to ``out``'s dtype."""
    np.copyto(out, value.astype(np.float32), casting="same_kind")


def _centered_moments_fused_(
    param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, grad_avg: np.ndarray, out: np.ndarray, *,
    alpha: float, weight_decay: float, maximize: bool,
) -> np.ndarray:
    r"""Centered RMSprop's gradient (into ``out``, returned) and moments, rounded as torch's CPU kernels round.

    :math:`v - \bar g^2` cancels when the gradient is steady (a weight-decay term dominating
    a tiny gradient), so it is only as good as :math:`v` and :math:`\bar g` are exact: a
    last-bit difference becomes a relative difference of order one, or a negative variance. In
    float32 torch fuses ``a + alpha * b`` (``add`` with ``alpha``), ``addcmul``'s
    ``a + (s t_1) t_2`` and ``lerp``'s ``base + c (end - start)`` into one rounding each, with
    float32 scalars; here each is computed in float64, where those products are exact, and
    rounded once, so the moments stay bit-identical to torch's (measured). float16 keeps the
    plain path: torch's half kernels round differently again, and float16 cannot resolve the
    cancellation anyway.
    """
    if maximize:
        np.negative(grad, out=out)
    else:
        np.copyto(out, grad)
    if weight_decay != 0:  # grad.add(param, alpha=weight_decay)
        _fused_into(out, out.astype(np.float64) + float(np.float32(weight_decay)) * param.astype(np.float64))
    g = out.astype(np.float64)
    _fused_into(square_avg, square_avg.astype(np.float64) * float(np.float32(alpha)))  # mul_(alpha)
    scaled = (np.float32(1 - alpha) * out.astype(np.float32)).astype(np.float64)  # addcmul's s * t1
    _fused_into(square_avg, square_avg.astype(np.float64) + scaled * g)
    weight = np.float32(1 - alpha)  # lerp_(grad, 1 - alpha)
    diff = (out.astype(np.float32) - grad_avg.astype(np.float32)).astype(np.float64)
    if weight < 0.5:
        _fused_into(grad_avg, grad_avg.astype(np.float64) + float(weight) * diff)
    else:
        _fused_into(grad_avg, g + float(weight - np.float32(1)) * diff)
    return out


def rmsprop_update_(
    param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, grad_avg: np.ndarray | None,
    momentum_buffer: np.ndarray | None, scratch: np.ndarray, scratch2: np.ndarray, *,
    lr: float, alpha: float, eps: float, weight_decay: float, momentum: float, maximize: bool,
) -> None:
    r"""One RMSprop step (``grad_avg`` given when centered, ``momentum_buffer`` when momentum > 0).

    .. math::
        g &\leftarrow \pm g + \lambda\theta \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1 - \alpha) g \ \text{(centered)} \\
        s &= \sqrt{v_t - \bar g_t^2}\ \text{(centered)}\ \text{else}\ \sqrt{v_t}; \quad s \leftarrow s + \epsilon \\
        b_t &= \mu b_{t-1} + g / s, \quad \theta \leftarrow \theta - \eta b_t \ \text{(momentum)},
            \quad \text{else}\ \theta \leftarrow \theta - \eta\, g / s

    :math:`\epsilon` is added outside the square root; the centered form subtracts the squared
    mean gradient, estimating the variance rather than the raw second moment.
    """
    if grad_avg is not None and param.dtype == np.float32:
        g = _centered_moments_fused_(param, grad, square_avg, grad_avg, scratch2, alpha=alpha,
                                     weight_decay=weight_decay, maximize=maximize)
        avg = np.sqrt(fused_sub_square(square_avg, grad_avg, out=scratch), out=scratch)
    elif grad_avg is not None:
        g = _decayed(grad, param, weight_decay, maximize, scratch2)
        _ema_sq_(square_avg, g, alpha, scratch)
        lerp_(grad_avg, g, 1 - alpha, scratch)
        avg = np.sqrt(fused_sub_square(square_avg, grad_avg, out=scratch), out=scratch)
    else:
        g = _decayed(grad, param, weight_decay, maximize, scratch2)
        _ema_sq_(square_avg, g, alpha, scratch)
        avg = np.sqrt(square_avg, out=scratch)
    avg += eps
    if momentum_buffer is not None:
        momentum_buffer *= momentum
        np.divide(g, avg, out=scratch)
        momentum_buffer += scratch
        np.multiply(momentum_buffer, -lr, out=scratch)
    else:  # addcdiv(g, avg, value=-lr): (-lr * g) / avg
        np.multiply(g, -lr, out=scratch2)
        np.divide(scratch2, avg, out=scratch)
    param += scratch


def adagrad_update_(
    param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, scratch: np.ndarray, scratch2: np.ndarray, *,
    clr: float, eps: float, weight_decay: float, maximize: bool,
) -> None:
    r"""One Adagrad step with the decayed rate ``clr`` :math:`= \eta / (1 + (t - 1)\,\delta)`.

    .. math::
        g &\leftarrow \pm g + \lambda\theta \\
        s_t &= s_{t-1} + g^2 \\
        \theta &\leftarrow \theta - \eta_t\, g / (\sqrt{s_t} + \epsilon)

    The learning-rate decay :math:`\delta` shrinks the step size, never the accumulator.
    """
    g = _decayed(grad, param, weight_decay, maximize, scratch2)
    np.multiply(g, g, out=scratch)
    state_sum += scratch
    std = np.sqrt(state_sum, out=scratch)
    std += eps
    np.multiply(g, -clr, out=scratch2)  # addcdiv(g, std, value=-clr): (-clr * g) / std
    scratch2 /= std
    param += scratch2


def adadelta_update_(
    param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, acc_delta: np.ndarray,
    scratch: np.ndarray, scratch2: np.ndarray, scratch3: np.ndarray, *,
    lr: float, rho: float, eps: float, weight_decay: float, maximize: bool,
) -> None:
    r"""One Adadelta step.

    .. math::
        g &\leftarrow \pm g + \lambda\theta \\
        v_t &= \rho v_{t-1} + (1 - \rho) g^2 \\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g \\
        u_t &= \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
        \theta &\leftarrow \theta - \eta \Delta_t

    The update uses the *previous* accumulated update :math:`u_{t-1}` (and :math:`\epsilon`
    inside both square roots, so the first steps are not zero); :math:`u` is refreshed after.
    """
    g = _decayed(grad, param, weight_decay, maximize, scratch2)
    _ema_sq_(square_avg, g, rho, scratch)
    delta = np.add(acc_delta, eps, out=scratch)
    np.sqrt(delta, out=delta)
    std = np.add(square_avg, eps, out=scratch3)
    np.sqrt(std, out=std)
    delta /= std
    delta *= g
    _ema_sq_(acc_delta, delta, rho, scratch3)
    delta *= -lr
    param += delta


def adamax_update_(
    param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_inf: np.ndarray,
    scratch: np.ndarray, scratch2: np.ndarray, *,
    clr: float, beta1: float, beta2: float, eps: float, weight_decay: float, maximize: bool,
) -> None:
    r"""One Adamax step with ``clr`` :math:`= \eta / (1 - \beta_1^t)`.

    .. math::
        g &\leftarrow \pm g + \lambda\theta \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g \\
        u_t &= \max(\beta_2 u_{t-1},\ |g| + \epsilon) \\
        \theta &\leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\, m_t / u_t

    Only the first moment is bias-corrected: the infinity norm :math:`u_t` is a max, not an
    average started at zero, so it needs no correction.
    """
    g = _decayed(grad, param, weight_decay, maximize, scratch2)
    lerp_(exp_avg, g, 1 - beta1, scratch)
    exp_inf *= beta2
    np.abs(g, out=scratch)
    scratch += eps
    np.maximum(exp_inf, scratch, out=exp_inf)
    np.multiply(exp_avg, -clr, out=scratch)  # addcdiv(exp_avg, exp_inf, value=-clr)
    scratch /= exp_inf
    param += scratch


def nadam_momentum(beta1: float, step: float, momentum_decay: float) -> float:
    r"""NAdam's momentum schedule :math:`\mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi})`."""
    return float(beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay))))


def nadam_update_(
    param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
    scratch: np.ndarray, scratch2: np.ndarray, *,
    grad_coef: float, avg_coef: float, bias_correction2: float, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, decoupled_weight_decay: bool, maximize: bool,
) -> None:
    r"""One NAdam step; ``grad_coef`` and ``avg_coef`` come from the momentum schedule.

    With :math:`\mu_t` from :func:`nadam_momentum` and :math:`\Pi_t = \prod_{i \le t} \mu_i`:

    .. math::
        \theta &\leftarrow (1 - \eta\lambda)\theta \ \text{(decoupled)}, \quad
            g \leftarrow \pm g + \lambda\theta \ \text{(L2)} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        d &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \frac{\eta (1 - \mu_t)}{1 - \Pi_t}\, g / d
            - \frac{\eta\, \mu_{t+1}}{1 - \Pi_t \mu_{t+1}}\, m_t / d

    ``grad_coef`` is the first coefficient with its sign, ``avg_coef`` the second.
    """
    g = _weight_decayed(grad, param, lr=lr, weight_decay=weight_decay, decoupled=decoupled_weight_decay,
                        maximize=maximize, out=scratch2)
    lerp_(exp_avg, g, 1 - beta1, scratch)
    _ema_sq_(exp_avg_sq, g, beta2, scratch)
    if g is not scratch2:
        np.copyto(scratch2, g)
    denom = np.divide(exp_avg_sq, bias_correction2, out=scratch)
    np.sqrt(denom, out=denom)
    denom += eps
    scratch2 *= grad_coef  # addcdiv(g, denom, value=grad_coef): (grad_coef * g) / denom
    scratch2 /= denom
    param += scratch2
    np.multiply(exp_avg, avg_coef, out=scratch2)
    scratch2 /= denom
    param += scratch2


def radam_rho(beta2: float, step: float) -> tuple[float, float]:
    r"""RAdam's :math:`\rho_\infty = 2 / (1 - \beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t)`."""
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf, rho_inf - 2 * step * (beta2**step) / (1 - beta2**step)


def radam_update_(
    param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
    scratch: np.ndarray, scratch2: np.ndarray, *,
    step: float, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
    decoupled_weight_decay: bool, maximize: bool,
) -> None:
    r"""One RAdam step.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t) \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        \theta &\leftarrow \theta - \eta\, \hat m_t \cdot \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}
            \cdot r_t \ \text{if}\ \rho_t > 5, \quad \text{else}\ \theta \leftarrow \theta - \eta \hat m_t

    (:func:`radam_rho` gives :math:`\rho`; weight decay as in NAdam.) While the variance of
    the adaptive rate is not yet tractable (:math:`\rho_t \le 5`, strictly), the step is plain
    bias-corrected momentum.
    """
    g = _weight_decayed(grad, param, lr=lr, weight_decay=weight_decay, decoupled=decoupled_weight_decay,
                        maximize=maximize, out=scratch2)
    lerp_(exp_avg, g, 1 - beta1, scratch)
    _ema_sq_(exp_avg_sq, g, beta2, scratch)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    rho_inf, rho_t = radam_rho(beta2, step)
    update = np.divide(exp_avg, bias_correction1, out=scratch2)
    update *= lr
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive = np.sqrt(exp_avg_sq, out=scratch)
        adaptive += eps
        np.divide(bias_correction2**0.5, adaptive, out=adaptive)
        update *= adaptive
        update *= rect
    param -= update


def sgd_update_(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buffer: np.ndarray | None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    scratch: np.ndarray | None = None,
) -> np.ndarray | None:
    r"""One SGD step on ``param`` in place; returns the (new) momentum buffer.

    With :math:`g_t` the gradient (negated when ``maximize``), :math:`\lambda` the weight
    decay, :math:`\mu` the momentum and :math:`\tau` the dampening:

    .. math::
        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        b_t &= g_t \ \text{if}\ t = 1, \quad \text{else}\ \mu b_{t-1} + (1 - \tau) g_t \\
        g_t &\leftarrow g_t + \mu b_t \ \text{(nesterov)}, \quad \text{else}\ g_t \leftarrow b_t \\
        \theta_t &= \theta_{t-1} - \eta g_t

    The buffer starts as the first gradient itself: dampening is *not* applied on the
    first step (applying it there is a common bug). ``grad`` is never modified; ``scratch``,
    shaped like ``param``, saves allocations.
    """
    if scratch is None:
        scratch = np.empty_like(param)
    d_p = -grad if maximize else grad
    if weight_decay != 0:
        d_p = d_p + weight_decay * param
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = np.array(d_p, dtype=param.dtype, copy=True)
        else:
            momentum_buffer *= momentum
            if dampening == 0:  # (1 - 0) * g is g exactly: one pass fewer, the same bits
                momentum_buffer += d_p
            else:
                np.multiply(d_p, 1 - dampening, out=scratch)
                momentum_buffer += scratch
        if nesterov:
            d_p = d_p + momentum * momentum_buffer
        else:
            d_p = momentum_buffer
    np.multiply(d_p, -lr, out=scratch)
    param += scratch
    return momentum_buffer


def adam_update_(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray | None,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    scratch: np.ndarray | None = None,
) -> None:
    r"""One Adam/AdamW step on ``param`` and its moments, all in place.

    ``step`` is :math:`t`, counted from 1, once per optimizer step (not per parameter):

    .. math::
        g_t &\leftarrow -g_t \ \text{(maximize)} \\
        \theta_{t-1} &\leftarrow (1 - \eta\lambda)\,\theta_{t-1} \ \text{(AdamW)}, \quad
            g_t \leftarrow g_t + \lambda\theta_{t-1} \ \text{(Adam, L2)} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(amsgrad, on the raw } v\text{)}, \quad
            \text{else}\ \hat v_t = v_t \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \cdot
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    :math:`\epsilon` is added *after* the bias-corrected square root. Two variants that
    other code uses differ only where :math:`\sqrt{\hat v}` is near :math:`\epsilon`, that
    is for gradients of about 1e-6 and below: "epsilon hat" (TF/Keras,
    :math:`\eta_t m_t / (\sqrt{v_t} + \hat\epsilon)` with :math:`\epsilon` added before the
    bias correction) and :math:`\epsilon` inside the square root. With unit-size gradients
    they agree with torch to about 1e-6 relative; with gradients of 1e-6 to 1e-8 they differ
    by about 1e-3, which is why checks must include such gradients. ``scratch``, an array
    shaped like ``param``, saves an allocation.
    """
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    scratch = np.subtract(grad, exp_avg, dtype=param.dtype, out=scratch)
    _lerp_(exp_avg, grad, scratch, 1 - beta1)
    exp_avg_sq *= beta2
    np.multiply(grad, 1 - beta2, out=scratch, casting="same_kind")
    scratch *= grad
    exp_avg_sq += scratch
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    second_moment = exp_avg_sq
    if max_exp_avg_sq is not None:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    denom = np.sqrt(second_moment, out=scratch)
    denom /= bias_correction2_sqrt
    denom += eps
    update = np.divide(exp_avg, denom, out=scratch)
    update *= -lr / bias_correction1
    param += update


def _lerp_(start: np.ndarray, end: np.ndarray, end_minus_start: np.ndarray, weight: float) -> None:
    """``start += weight * (end - start)`` in place, in the form torch's ``lerp`` uses.

    ``end_minus_start`` is a scratch array holding ``end - start``; it is overwritten.
    """
    if weight < 0.5:
        end_minus_start *= weight
        start += end_minus_start
    else:
        end_minus_start *= weight - 1
        np.add(end, end_minus_start, out=start, casting="same_kind")
