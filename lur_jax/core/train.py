"""Training state and pure optimiser steps built on optax.

A step is ``(state, retain_batch, forget_batch) -> (state, metrics)``; jit it
at the call site (with ``donate_argnums=0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypedDict

import jax
import jax.numpy as jnp
import optax

from lur_jax.core import lur, streams

Step = Callable[[Any, dict, dict], tuple[Any, dict]]


class TrainState(NamedTuple):
  """What a step carries from one call to the next (a pytree; donate it to ``jit``).

  Attributes:
    params: the parameter pytree.
    opt_state: the optax optimiser state.
    step: int32 scalar, the number of steps taken.
    rng: the run's root PRNG key; step ``t`` uses ``fold_in(rng, t)``.
    model_state: BatchNorm running statistics (``{}`` without BatchNorm).
    reference: the frozen parameters a run starts from, where the task's objectives
      need them (NPO's reference model; ``Objectives.needs_reference``), else ``None``.
      Carried in the state, the reference is an argument of the compiled step, sharded
      as the parameters, never a constant folded into it.
  """

  params: Any
  opt_state: Any
  step: jax.Array
  rng: jax.Array
  model_state: Any = None
  reference: Any = None


class Variables(TypedDict):
  """A model as it is stored, measured and restored: a plain dict (a pytree Orbax saves and
  ``params_checksum`` hashes as before), typed.

  Attributes:
    params: the parameters.
    model_state: BatchNorm's running statistics (``{}`` without BatchNorm).
  """

  params: Any
  model_state: Any


def variables_of(state: TrainState) -> Variables:
  """The :class:`Variables` of a training state (its optimiser state, step and key left out).

  Args:
    state: a :class:`TrainState` (with a member axis for an ensemble).

  Returns:
    ``Variables(params=state.params, model_state=state.model_state)``.
  """
  return Variables(params=state.params, model_state=state.model_state)


StateUpdate = Callable[[Any, Any, dict], Any]  # (params, model_state, retain_batch) -> state


def sgd(lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> optax.GradientTransformation:
  """SGD with momentum and (coupled) weight decay, as in the SalUn code.

  Args:
    lr: the learning rate, > 0 (or a traced per-member value in a sweep, or a schedule).
    momentum: heavy-ball momentum; 0 for none.
    weight_decay: added to the gradient as ``weight_decay · θ`` before momentum.

  Returns:
    An ``optax.GradientTransformation``.
  """
  # a sweep's traced lr (see ensemble) or a schedule is checked where it is made
  if not isinstance(lr, jax.core.Tracer) and not callable(lr) and not lr > 0:
    raise ValueError(f"learning rate {lr!r}; allowed: a number > 0")
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(lr, momentum=momentum or None))


OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")


def optimizer(settings, total_steps: int | None = None) -> optax.GradientTransformation:
  """The optimiser a config section names.

  Args:
    settings: a method's :class:`~lur_jax.Settings` (read as attributes) with ``lr``,
      ``momentum``, ``weight_decay`` and optionally ``optimizer``: ``"sgd"``
      (the default, :func:`sgd`) or ``"adam"`` (AdamW, weight decay decoupled),
      and ``schedule``: ``"constant"`` (the default) or ``"cosine"`` (a linear
      warm-up over the first 5% of the steps, then a cosine decay to 0).
    total_steps: the run's length (needed by ``"cosine"``).

  Returns:
    An ``optax.GradientTransformation``.
  """
  name = settings.get("optimizer", "sgd")
  lr = settings.lr
  if settings.get("schedule", "constant") == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, total_steps // 20), total_steps)
  if name == "adam":
    return optax.adamw(lr, weight_decay=settings.weight_decay)
  if name == "sgd":
    return sgd(lr, settings.momentum, settings.weight_decay)
  raise ValueError(f"optimizer={name!r}; allowed: {', '.join(OPTIMIZERS)}")


def init_state(params, tx: optax.GradientTransformation, rng: jax.Array,
               model_state=None) -> TrainState:
  """A step's starting state.

  Args:
    params: the parameter pytree.
    tx: the optimiser whose state is initialised.
    rng: the run's root PRNG key.
    model_state: BatchNorm running statistics, if any.

  Returns:
    A :class:`TrainState` at step 0.
  """
  return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32), rng,
                    {} if model_state is None else model_state)


def check_batches(retain_batch: dict, forget_batch: dict) -> None:
  """Checks the batches a step receives (when tracing, so once per shape).

  Args:
    retain_batch, forget_batch: dicts with ``"x"`` ``[B, ...]`` and ``"y"`` ``[B, ...]``
      (a label per example, or a per-token answer mask).

  Raises:
    ValueError: unless both hold ``x`` and ``y`` of one length and the two
      sets' examples have the same shape.
  """
  for role, batch in (("retain", retain_batch), ("forget", forget_batch)):
    if not isinstance(batch, dict) or not {"x", "y"} <= set(batch):
      held = f"keys {sorted(batch)}" if isinstance(batch, dict) else type(batch).__name__
      raise ValueError(f"{role} batch with {held}; allowed: a dict with 'x' and 'y'")
    if batch["x"].shape[:1] != batch["y"].shape[:1] or batch["y"].ndim == 0:
      raise ValueError(f"{role} batch: x {tuple(batch['x'].shape)} and y "
                       f"{tuple(batch['y'].shape)}; allowed: y of shape [len(x), ...]")
  if retain_batch["x"].shape[1:] != forget_batch["x"].shape[1:]:
    raise ValueError(f"retain examples of shape {tuple(retain_batch['x'].shape[1:])} but forget "
                     f"examples of shape {tuple(forget_batch['x'].shape[1:])}; allowed: the same")


def with_keys(state: TrainState, retain_batch: dict, forget_batch: dict) -> tuple[dict, dict]:
  """Adds the per-step keys that random objectives read (``rl``'s labels, the
  diffusion noise), one for each batch.

  Raises:
    TypeError: for a ``state`` that is not a :class:`TrainState` (the parameters, say).
  """
  if not isinstance(state, TrainState):
    raise TypeError(f"a step's state of type {type(state).__name__}; allowed: a TrainState "
                    "(lur_jax.init_state(params, tx, key))")
  key = jax.random.fold_in(state.rng, state.step)
  retain_key = jax.random.fold_in(key, streams.RETAIN)
  return {**retain_batch, "key": retain_key}, {**forget_batch, "key": key}


def _apply(state: TrainState, grads, tx, retain_batch, state_update) -> TrainState:
  """The optimiser update; running statistics follow the retain batch at θ."""
  model_state = state.model_state
  if state_update is not None:
    model_state = state_update(state.params, model_state, retain_batch)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state._replace(params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state, step=state.step + 1, model_state=model_state)


def conflict_metrics(params, retain_batch, forget_batch, retain_loss_fn, forget_loss_fn) -> dict:
  """Retain and forget losses at θ and the cosine of their gradients.

  The cosine is the gradient-conflict measure of the LUR paper: negative
  values mean a step on the forget objective undoes retention.

  Args:
    params: θ.
    retain_batch, forget_batch: the batches of the two losses.
    retain_loss_fn, forget_loss_fn: ``(params, batch) -> scalar``.

  Returns:
    ``{"retain_loss", "forget_loss", "grad_cosine"}``, scalars.
  """
  retain_loss, retain_grad = jax.value_and_grad(retain_loss_fn)(params, retain_batch)
  forget_loss, forget_grad = jax.value_and_grad(forget_loss_fn)(params, forget_batch)
  return {"retain_loss": retain_loss, "forget_loss": forget_loss,
          "grad_cosine": lur.tree_cosine(forget_grad, retain_grad)}


def lookahead_alignment(params, retain_batch, forget_batch, retain_loss_fn, forget_loss_fn, *,
                        inner_lr, inner_steps: int = 1) -> dict:
  """Where LUR's second-order term acts, for any method's parameters θ.

  θ_K is :func:`lur_jax.lookahead_params` on the retain loss (step α, K steps).
  To first order in α, L_u(θ_1) = L_u(θ) − α⟨∇L_u(θ), ∇L_r(θ)⟩, so descending the
  unlearning loss after the lookahead raises the alignment of the two gradients.

  Args:
    params: θ.
    retain_batch, forget_batch: the batches of the two losses.
    retain_loss_fn, forget_loss_fn: ``(params, batch) -> scalar``.
    inner_lr, inner_steps: α and K of the virtual retain steps.

  Returns:
    ``lookahead_dot`` ⟨∇L_u(θ_K), ∇L_r(θ)⟩, its cosine ``lookahead_cosine``, and
    ``grad_cosine``, the cosine of ∇L_u(θ) and ∇L_r(θ) at θ itself.
  """
  retain_grad = jax.grad(retain_loss_fn)(params, retain_batch)
  theta_k = lur.lookahead_params(params, retain_loss_fn, retain_batch, inner_lr=inner_lr,
                                 inner_steps=inner_steps)
  forget_grad_k = jax.grad(forget_loss_fn)(theta_k, forget_batch)
  forget_grad = jax.grad(forget_loss_fn)(params, forget_batch)
  return {"grad_cosine": lur.tree_cosine(forget_grad, retain_grad),
          "lookahead_dot": optax.tree.vdot(forget_grad_k, retain_grad),
          "lookahead_cosine": lur.tree_cosine(forget_grad_k, retain_grad)}


def gradient_step(value_and_grad_fn: Callable, tx: optax.GradientTransformation, *,
                  retain_loss_fn: Callable | None = None,
                  forget_loss_fn: Callable | None = None,
                  state_update: StateUpdate | None = None) -> Step:
  """A step applying ``value_and_grad_fn(params, retain_batch, forget_batch)``.

  Args:
    value_and_grad_fn: returns ``(loss, grads)``; the update direction may be
      any function of the batches (a projected gradient, say).
    tx: the optax optimiser.
    retain_loss_fn, forget_loss_fn: when both are given, the step also
      reports :func:`conflict_metrics`.
    state_update: refreshes the model state (BatchNorm running statistics)
      from the retain batch; ``None`` keeps it.

  Returns:
    A pure step ``(state, retain_batch, forget_batch) -> (state, metrics)``.
  """
  def step(state, retain_batch, forget_batch):
    check_batches(retain_batch, forget_batch)
    retain_batch, forget_batch = with_keys(state, retain_batch, forget_batch)
    loss, grads = value_and_grad_fn(state.params, retain_batch, forget_batch)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    if retain_loss_fn is not None and forget_loss_fn is not None:
      metrics.update(conflict_metrics(state.params, retain_batch, forget_batch,
                                      retain_loss_fn, forget_loss_fn))
    return _apply(state, grads, tx, retain_batch, state_update), metrics
  return step


def objective_step(objective: Callable, tx: optax.GradientTransformation, **kwargs) -> Step:
  """A step descending one objective of both batches.

  Args:
    objective: ``(params, retain_batch, forget_batch) -> scalar``.
    tx: the optax optimiser.
    **kwargs: ``retain_loss_fn``, ``forget_loss_fn``, ``state_update``, as in
      :func:`gradient_step`.

  Returns:
    A pure step ``(state, retain_batch, forget_batch) -> (state, metrics)``.
  """
  return gradient_step(jax.value_and_grad(objective), tx, **kwargs)


def l1_penalty(schedule: Callable) -> optax.GradientTransformation:
  """An optax transform adding an L1 subgradient, ``schedule(count) · sign(θ)``.

  Args:
    schedule: ``count -> α_t``, e.g. ``optax.linear_schedule(α, 0, steps)``
      (l1-sparse).

  Returns:
    An ``optax.GradientTransformation``; chain it before the optimiser.
  """
  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros((), jnp.int32))

  def update(grads, state, params):
    alpha = schedule(state.count)
    grads = jax.tree.map(lambda g, p: g + alpha * jnp.sign(p), grads, params)
    return grads, optax.ScaleByScheduleState(count=state.count + 1)
  return optax.GradientTransformation(init, update)


@lur.documented
def lur_step(tx: optax.GradientTransformation, *, retain_loss_fn, forget_loss_fn,
             inner_lr: float, inner_steps: int = 1, lookahead: str = "retain",
             retain_weight: float = 1.0, forget_weight: float = 1.0,
             mode: str = "exact", remat: bool = False,
             diagnostics: bool = True, state_update: StateUpdate | None = None) -> Step:
  """The LUR optimiser step: descend ∇J(θ) (see :mod:`lur_jax.core.lur`) with ``tx``.

  Args:
    tx: the optax optimiser for the outer update.
    LOSS_ARGS
    MODE_ARG
    diagnostics: also compute :func:`conflict_metrics` at θ (two more
      gradients); otherwise metrics hold the LUR terms only.
    state_update: refreshes the model state (BatchNorm running statistics)
      from the retain batch; ``None`` keeps it.

  Returns:
    A pure step ``(state, retain_batch, forget_batch) -> (state, metrics)``
    with metrics ``loss`` (J), ``grad_norm``, ``lookahead_loss``, ``target_loss`` and, with
    diagnostics, ``retain_loss``, ``forget_loss``, ``grad_cosine``.
  """
  lur_kw = dict(retain_loss_fn=retain_loss_fn, forget_loss_fn=forget_loss_fn,
                inner_lr=inner_lr, inner_steps=inner_steps, lookahead=lookahead,
                retain_weight=retain_weight, forget_weight=forget_weight,
                mode=mode, remat=remat)
  lur.check_settings(lookahead, mode, inner_steps)  # fail now, not at the first trace

  def step(state, retain_batch, forget_batch):
    check_batches(retain_batch, forget_batch)
    retain_batch, forget_batch = with_keys(state, retain_batch, forget_batch)
    value, grads, terms = lur.lur_value_and_grad_with_terms(
        state.params, retain_batch, forget_batch, **lur_kw)
    metrics = {"loss": value, "grad_norm": optax.tree.norm(grads),
               "lookahead_loss": terms.lookahead_loss, "target_loss": terms.target_loss}
    if diagnostics:
      metrics.update(conflict_metrics(state.params, retain_batch, forget_batch,
                                      retain_loss_fn, forget_loss_fn))
    return _apply(state, grads, tx, retain_batch, state_update), metrics
  return step
