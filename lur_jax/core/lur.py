"""The LUR objective and its gradient: exact, Hessian-vector product, first order.

Notation (docs/protocol.md). The *lookahead* loss is the one the virtual steps
descend; the *target* loss is evaluated after them:

    θ_0 = θ;  θ_{k+1} = θ_k − α ∇L_look(θ_k)          (k < K)
    J(θ) = w_look · L_look(θ) + w_target · L_target(θ_K(θ))

With ``lookahead="retain"`` (the default) L_look is the retain loss and
L_target the forget loss; ``lookahead="forget"`` swaps them.  By the chain rule

    ∇J = w_look ∇L_look(θ) + w_target (I − αH_0)(I − αH_1)···(I − αH_{K−1}) v,
    v  = ∇L_target(θ_K),   H_k = ∇²L_look(θ_k),

which ``mode="exact"`` obtains with reverse-over-reverse autodiff, ``mode="hvp"``
with K forward-over-reverse Hessian-vector products, and ``mode="first_order"``
drops (every H_k := 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch], jax.Array]

LOOKAHEADS = ("retain", "forget")
MODES = ("exact", "hvp", "first_order")


class LurTerms(NamedTuple):
  """The two summands of J(θ), unweighted.

  Attributes:
    lookahead_loss: L_look(θ), the loss the virtual steps descend (the retain
      loss with ``lookahead="retain"``), a scalar.
    target_loss: L_target(θ_K), the other loss after the K virtual steps.
  """

  lookahead_loss: jax.Array
  target_loss: jax.Array


class _Roles(NamedTuple):
  look_fn: LossFn
  look_batch: Batch
  look_weight: float
  target_fn: LossFn
  target_batch: Batch
  target_weight: float


def _roles(retain_batch, forget_batch, *, retain_loss_fn, forget_loss_fn,
           lookahead, retain_weight, forget_weight) -> _Roles:
  if lookahead == "retain":
    return _Roles(retain_loss_fn, retain_batch, retain_weight,
                  forget_loss_fn, forget_batch, forget_weight)
  if lookahead == "forget":
    return _Roles(forget_loss_fn, forget_batch, forget_weight,
                  retain_loss_fn, retain_batch, retain_weight)
  raise ValueError(f"lookahead={lookahead!r}; allowed: {', '.join(LOOKAHEADS)}")


def check_inner_steps(inner_steps):
  """Raises ValueError unless K is an int >= 1."""
  if not isinstance(inner_steps, int) or isinstance(inner_steps, bool) or inner_steps < 1:
    raise ValueError(f"inner_steps={inner_steps!r}; allowed: an int >= 1")


def check_settings(lookahead: str, mode: str, inner_steps: int) -> None:
  """Raises ValueError naming a bad ``lookahead``, ``mode`` or ``inner_steps``."""
  if lookahead not in LOOKAHEADS:
    raise ValueError(f"lookahead={lookahead!r}; allowed: {', '.join(LOOKAHEADS)}")
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}; allowed: {', '.join(MODES)}")
  check_inner_steps(inner_steps)


def _sgd(params, grads, lr):
  return optax.tree.add_scale(params, -lr, grads)


def lookahead_params(params: Params, loss_fn: LossFn, batch: Batch, *,
                     inner_lr: float, inner_steps: int = 1,
                     remat: bool = False) -> Params:
  """Runs K virtual gradient-descent steps on ``loss_fn`` and returns θ_K.

  Args:
    params: θ, any pytree of arrays.
    loss_fn: pure ``(params, batch) -> scalar``.
    batch: the batch the virtual steps use (the same one every step).
    inner_lr: α.
    inner_steps: K >= 1.
    remat: bound the memory of differentiating through K > 1 steps: the steps
      run as a ``lax.scan`` of ``jax.checkpoint``-ed steps, so the backward pass
      keeps only θ_0 … θ_{K−1} and recomputes each step's activations. Without
      it the steps are unrolled in Python, which is faster on XLA:CPU (it runs
      convolutions inside loops many times slower) but keeps every step's
      activations alive.

  Returns:
    θ_K, with the structure of ``params``.
  """
  check_inner_steps(inner_steps)

  def step(p, _):
    return _sgd(p, jax.grad(loss_fn)(p, batch), inner_lr), None

  if remat and inner_steps > 1:
    return lax.scan(jax.checkpoint(step), params, None, length=inner_steps)[0]
  for _ in range(inner_steps):
    params, _ = step(params, None)
  return params


_DATA_ARGS = """\
    params: θ, the model's parameters (a pytree).
    retain_batch, forget_batch: what ``retain_loss_fn`` and ``forget_loss_fn`` read (dicts
      of arrays, e.g. ``{"x": inputs, "y": labels}``).
"""
_LOSS_ARGS = """\
    retain_loss_fn, forget_loss_fn: pure ``(params, batch) -> scalar`` losses; the
      unlearning sign lives in ``forget_loss_fn`` (gradient ascent is ``-cross_entropy``).
    inner_lr: α, the step size of the virtual steps (> 0).
    inner_steps: K, the number of virtual steps (≥ 1).
    lookahead: ``"retain"`` (the virtual steps descend the retain loss, the forget loss is
      evaluated after them) or ``"forget"`` (the reverse).
    retain_weight, forget_weight: w_r and w_u, the two losses' weights in J.
    remat: bound the memory of differentiating through K > 1 virtual steps (they are
      recomputed in the backward pass; no effect at K = 1 or in ``first_order``).
"""
_MODE_ARG = """\
    mode: ``"exact"`` (reverse-over-reverse: each virtual step's gradient differentiated
      backward from the pass that computed it; with ``remat`` and K > 1, ``jax.grad``
      through the checkpointed steps), ``"hvp"`` (the same gradient from forward-over-reverse
      Hessian-vector products; any K) or ``"first_order"`` (the lookahead displacement held
      constant, dropping the Hessian term).
"""


def documented(fn):
  """Writes the shared argument descriptions into ``fn``'s docstring where it says
  ``DATA_ARGS``, ``LOSS_ARGS`` and ``MODE_ARG`` (one text, so every function states every
  argument)."""
  for name, text in (("DATA_ARGS", _DATA_ARGS), ("LOSS_ARGS", _LOSS_ARGS),
                     ("MODE_ARG", _MODE_ARG)):
    fn.__doc__ = fn.__doc__.replace(f"    {name}\n", text)
  return fn


@documented
def lur_loss(params: Params, retain_batch: Batch, forget_batch: Batch, *,
             retain_loss_fn: LossFn, forget_loss_fn: LossFn, inner_lr: float,
             inner_steps: int = 1, lookahead: str = "retain",
             retain_weight: float = 1.0, forget_weight: float = 1.0,
             remat: bool = False) -> jax.Array:
  """J(θ): the weighted lookahead loss at θ plus the target loss at θ_K.

  Args:
    DATA_ARGS
    LOSS_ARGS

  Returns:
    The scalar J(θ).
  """
  value, _ = _lur_terms(
      params, retain_batch, forget_batch, retain_loss_fn=retain_loss_fn,
      forget_loss_fn=forget_loss_fn, inner_lr=inner_lr, inner_steps=inner_steps,
      lookahead=lookahead, retain_weight=retain_weight,
      forget_weight=forget_weight, remat=remat)
  return value


def _lur_terms(params, retain_batch, forget_batch, *, inner_lr, inner_steps,
               remat, **role_kw) -> tuple[jax.Array, LurTerms]:
  r = _roles(retain_batch, forget_batch, **role_kw)
  theta_k = lookahead_params(params, r.look_fn, r.look_batch, inner_lr=inner_lr,
                             inner_steps=inner_steps, remat=remat)
  terms = LurTerms(r.look_fn(params, r.look_batch),
                   r.target_fn(theta_k, r.target_batch))
  return r.look_weight * terms.lookahead_loss + r.target_weight * terms.target_loss, terms


def _hvp(loss_fn, params, batch, vector):
  """(∇L(θ), ∇²L(θ)·v) by forward-over-reverse differentiation."""
  return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (vector,))


def _weighted_grad_minus_hvp(loss_fn, params, batch, vector, weight, scale):
  """``(L(θ), w ∇L(θ) − c ∇²L(θ)·v)`` from one forward-over-reverse pass, as one tree.

  The loss is scaled by a scalar s (at s = 1) that is differentiated too: the tangent of
  ∇[s L](θ) in the direction (−c v, w) is w ∇L(θ) + s ∇²L(θ)(−c v), which the backward pass
  builds layer by layer, so the step never holds ∇L(θ) and H·v as two trees.
  """
  def scaled_value_and_grad(p, s):
    return jax.value_and_grad(lambda q: s * loss_fn(q, batch))(p)
  # weakly typed scalars: s · L keeps the loss's dtype
  one, weight = jnp.asarray(1.0), jnp.asarray(weight, jnp.result_type(float))
  (value, _), (_, combined) = jax.jvp(scaled_value_and_grad, (params, one),
                                      (optax.tree.scale(-scale, vector), weight))
  return value, combined


def _lur_hvp(params, r: _Roles, inner_lr, inner_steps, remat):
  """∇J as v − α H v products, one Hessian-vector product per virtual step.

  θ_0's product comes last and yields w_look ∇L_look(θ) − w_target α H_0 v in one tree
  (:func:`_weighted_grad_minus_hvp`), so ∇L_look(θ), computed first for the virtual step, is
  not kept through the passes in between. Unrolled in Python, or with ``remat`` (and K > 1)
  as two ``lax.scan`` loops, so that one Hessian-vector product's activations are alive at
  a time.
  """
  def step(theta, _):  # θ_{k+1}, keeping θ_k
    return _sgd(theta, jax.grad(r.look_fn)(theta, r.look_batch), inner_lr), theta

  def back(v, theta_j):  # v ← (I − α H_j) v
    _, hv = _hvp(r.look_fn, theta_j, r.look_batch, v)
    return optax.tree.add_scale(v, -inner_lr, hv), None

  theta, _ = step(params, None)  # θ_1
  if remat and inner_steps > 1:
    theta, thetas = lax.scan(step, theta, None, length=inner_steps - 1)  # θ_1 … θ_{K−1}
    target_value, v = jax.value_and_grad(r.target_fn)(theta, r.target_batch)
    v, _ = lax.scan(back, v, thetas, reverse=True)
  else:
    thetas = []
    for _ in range(inner_steps - 1):
      theta, theta_k = step(theta, None)
      thetas.append(theta_k)
    target_value, v = jax.value_and_grad(r.target_fn)(theta, r.target_batch)
    for theta_j in reversed(thetas):  # latest first
      v, _ = back(v, theta_j)
  # ∇J = w_look ∇L_look(θ) + w_target (I − α H_0) v
  look_value, combined = _weighted_grad_minus_hvp(
      r.look_fn, params, r.look_batch, v, r.look_weight, r.target_weight * inner_lr)
  grad = jax.tree.map(lambda a, b: a + r.target_weight * b, combined, v)
  return grad, LurTerms(look_value, target_value)


def _lur_exact(params, r: _Roles, inner_lr, inner_steps):
  """∇J by reverse-over-reverse differentiation, virtual step by virtual step.

  Each step's gradient program is differentiated backward (its VJP, H_k·v, H_k being
  symmetric) from the residuals of the pass that computed it, so ∇L_look(θ) is computed
  once and serves the lookahead term, the first step and its VJP (``jax.grad`` through J
  computes it twice, for the term and for the step, and leaves the merging to XLA).
  Unrolled: every step's residuals stay alive until the backward pass.
  """
  def look(theta):  # (∇L_look(θ), L_look(θ)): the value rides along, not differentiated
    value, grad = jax.value_and_grad(r.look_fn)(theta, r.look_batch)
    return grad, value

  theta, backs = params, []
  for _ in range(inner_steps):
    grad, back, value = jax.vjp(look, theta, has_aux=True)
    if not backs:
      look_value, look_grad = value, grad
    backs.append(back)
    theta = _sgd(theta, grad, inner_lr)
  target_value, v = jax.value_and_grad(r.target_fn)(theta, r.target_batch)
  for back in reversed(backs):  # v ← (I − α H_k) v, latest first
    (hv,) = back(v)
    v = optax.tree.add_scale(v, -inner_lr, hv)
  grad = jax.tree.map(lambda a, b: r.look_weight * a + r.target_weight * b, look_grad, v)
  return grad, LurTerms(look_value, target_value)


def _lur_first_order(params, r: _Roles, inner_lr, inner_steps):
  """No backward pass runs through the virtual steps, so ``remat`` has nothing to save."""
  look_value, look_grad = jax.value_and_grad(r.look_fn)(params, r.look_batch)
  theta_k = lookahead_params(params, r.look_fn, r.look_batch, inner_lr=inner_lr,
                             inner_steps=inner_steps)
  target_value, target_grad = jax.value_and_grad(r.target_fn)(
      lax.stop_gradient(theta_k), r.target_batch)
  grad = jax.tree.map(lambda a, b: r.look_weight * a + r.target_weight * b,
                      look_grad, target_grad)
  return grad, LurTerms(look_value, target_value)


@documented
def lur_value_and_grad_with_terms(
    params, retain_batch, forget_batch, *, retain_loss_fn, forget_loss_fn,
    inner_lr, inner_steps=1, lookahead="retain", retain_weight=1.0,
    forget_weight=1.0, mode="exact", remat=False):
  """J(θ), its gradient, and the two terms of J.

  Args:
    DATA_ARGS
    LOSS_ARGS
    MODE_ARG

  Returns:
    ``(J(θ), ∇J(θ), terms)``: a scalar, a pytree like ``params`` and the
    :class:`LurTerms` (unweighted).
  """
  check_settings(lookahead, mode, inner_steps)
  role_kw = dict(retain_loss_fn=retain_loss_fn, forget_loss_fn=forget_loss_fn,
                 lookahead=lookahead, retain_weight=retain_weight,
                 forget_weight=forget_weight)
  if mode == "exact" and not (remat and inner_steps > 1):
    r = _roles(retain_batch, forget_batch, **role_kw)
    grad, terms = _lur_exact(params, r, inner_lr, inner_steps)
    value = r.look_weight * terms.lookahead_loss + r.target_weight * terms.target_loss
    return value, grad, terms
  if mode == "exact":  # with remat: jax.grad through the checkpointed scan of the steps
    (value, terms), grad = jax.value_and_grad(_lur_terms, has_aux=True)(
        params, retain_batch, forget_batch, inner_lr=inner_lr,
        inner_steps=inner_steps, remat=remat, **role_kw)
    return value, grad, terms
  r = _roles(retain_batch, forget_batch, **role_kw)
  if mode == "hvp":
    grad, terms = _lur_hvp(params, r, inner_lr, inner_steps, remat)
  else:
    grad, terms = _lur_first_order(params, r, inner_lr, inner_steps)
  value = r.look_weight * terms.lookahead_loss + r.target_weight * terms.target_loss
  return value, grad, terms


@documented
def lur_value_and_grad(params: Params, retain_batch: Batch, forget_batch: Batch, *,
                       retain_loss_fn: LossFn, forget_loss_fn: LossFn,
                       inner_lr: float, inner_steps: int = 1,
                       lookahead: str = "retain", retain_weight: float = 1.0,
                       forget_weight: float = 1.0, mode: str = "exact",
                       remat: bool = False) -> tuple[jax.Array, Params]:
  """J(θ) and its gradient.

  Args:
    DATA_ARGS
    LOSS_ARGS
    MODE_ARG

  Returns:
    ``(J(θ), ∇J(θ))``; the value is J(θ) in every mode.
  """
  value, grad, _ = lur_value_and_grad_with_terms(
      params, retain_batch, forget_batch, retain_loss_fn=retain_loss_fn,
      forget_loss_fn=forget_loss_fn, inner_lr=inner_lr, inner_steps=inner_steps,
      lookahead=lookahead, retain_weight=retain_weight,
      forget_weight=forget_weight, mode=mode, remat=remat)
  return value, grad


def tree_cosine(a: Params, b: Params) -> jax.Array:
  """Cosine similarity of two pytrees seen as flat vectors.

  Args:
    a, b: pytrees of the same structure (e.g. two gradients).

  Returns:
    A scalar in [−1, 1]; 0 if either tree is all zeros.
  """
  dot = optax.tree.vdot(a, b)
  denom = optax.tree.norm(a) * optax.tree.norm(b)
  return jnp.where(denom > 0, dot / jnp.where(denom > 0, denom, 1.0), 0.0)
