r"""Update rules of RMSprop, Adagrad, Adadelta, Adamax, NAdam and RAdam, in torch.optim's order of operations.

Each rule updates ``param`` and its state arrays in place, for one parameter (or one
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
    g = _decayed(grad, param, weight_decay, maximize, scratch2)
    _ema_sq_(square_avg, g, alpha, scratch)
    if grad_avg is not None:
        lerp_(grad_avg, g, 1 - alpha, scratch)
        np.multiply(grad_avg, -1.0, out=scratch)
        scratch *= grad_avg
        scratch += square_avg
        avg = np.sqrt(scratch, out=scratch)
    else:
        avg = np.sqrt(square_avg, out=scratch)
    avg += eps
    if momentum_buffer is not None:
        momentum_buffer *= momentum
        np.divide(g, avg, out=scratch)
        momentum_buffer += scratch
        np.multiply(momentum_buffer, -lr, out=scratch)
    else:
        np.divide(g, avg, out=scratch)
        scratch *= -lr
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
    np.divide(g, std, out=scratch)
    scratch *= -clr
    param += scratch


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
    np.divide(exp_avg, exp_inf, out=scratch)
    scratch *= -clr
    param += scratch


def nadam_momentum(beta1: float, step: float, momentum_decay: float) -> float:
    r"""NAdam's momentum schedule :math:`\mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi})`."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


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
    if maximize:
        g = np.negative(grad, out=scratch2)
    else:
        g = grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            if g is grad:
                np.copyto(scratch2, grad)
                g = scratch2
            g += weight_decay * param
    lerp_(exp_avg, g, 1 - beta1, scratch)
    _ema_sq_(exp_avg_sq, g, beta2, scratch)
    if g is not scratch2:
        np.copyto(scratch2, g)
    denom = np.divide(exp_avg_sq, bias_correction2, out=scratch)
    np.sqrt(denom, out=denom)
    denom += eps
    scratch2 /= denom
    scratch2 *= grad_coef
    param += scratch2
    np.divide(exp_avg, denom, out=scratch)
    scratch *= avg_coef
    param += scratch


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
    if maximize:
        g = np.negative(grad, out=scratch2)
    else:
        g = grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            if g is grad:
                np.copyto(scratch2, grad)
                g = scratch2
            g += weight_decay * param
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
