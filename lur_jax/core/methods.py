"""Unlearning methods, picked by name from ``METHODS``.

Every method builds a pure step ``(state, retain_batch, forget_batch) ->
(state, metrics)`` from the same :class:`Context`; adding a baseline is one
function and one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from lur_jax.core import checks, losses, lur, saliency, train
from lur_jax.core.settings import Settings

Loss = Callable[[Any, dict], jax.Array]  # (params, batch) -> scalar


class RetainObjective(Protocol):
  """``(apply_fn, num_classes) -> loss``: the task's loss on D_r."""

  def __call__(self, apply_fn: Callable, num_classes: int) -> Loss: ...


class ForgetObjective(Protocol):
  """``(name, apply_fn, num_classes, reference=...) -> loss``: unlearning objective
  ``name``, minimised; ``reference`` only when the objectives need one."""

  def __call__(self, name: str, apply_fn: Callable, num_classes: int, **reference) -> Loss: ...


class PerExampleObjective(Protocol):
  """``apply_fn -> (params, batch) -> [B]``: the loss SalUn and Scissorhands score."""

  def __call__(self, apply_fn: Callable) -> Callable[[Any, dict], jax.Array]: ...


class KLObjective(Protocol):
  """``(apply_fn, reference) -> loss``: KL(reference ‖ model) on a retain batch."""

  def __call__(self, apply_fn: Callable, reference: Any) -> Loss: ...


class Objectives(NamedTuple):
  """The losses a task gives the methods (classification by default).

  Attributes:
    retain: ``(apply_fn, num_classes) -> (params, batch) -> scalar``.
    forget: ``(name, apply_fn, num_classes) -> (params, batch) ->
      scalar``, the unlearning objective ``name`` ("ga" or "rl"), minimised.
    per_example: ``(apply_fn) -> (params, batch) -> [B]``, the loss whose
      gradient on D_f SalUn and Scissorhands score.
    forget_names: the names ``forget`` accepts.
    needs_reference: ``forget`` and ``retain_kl`` take ``reference=``, the frozen
      parameters the run starts from (NPO's reference model).
    retain_kl: optional ``(apply_fn, reference) -> (params, batch) ->
      scalar``, KL(reference ‖ model) on a retain batch (``retain_loss="kl"``).
  """

  retain: RetainObjective
  forget: ForgetObjective
  per_example: PerExampleObjective
  forget_names: tuple[str, ...] = losses.FORGET_OBJECTIVES
  needs_reference: bool = False
  retain_kl: KLObjective | None = None


#: The classification losses: cross-entropy on D_r; ``ga`` or ``rl`` on D_f.
CLASSIFICATION = Objectives(
    retain=lambda apply_fn, num_classes: losses.ce_objective(apply_fn),
    forget=losses.forget_objective,
    per_example=lambda apply_fn: lambda p, b: losses.cross_entropy(apply_fn(p, b["x"]), b["y"]))


class Context(NamedTuple):
  """What every method's ``make_step`` is built from.

  Attributes:
    apply_fn: ``(params, x) -> logits`` (or the task's output).
    num_classes: the number of classes the outputs score (a language model's vocabulary;
      :class:`~lur_jax.Splits`).
    init_fn: ``rng -> fresh params``, for re-initialisation (Scissorhands).
    state_update: refreshes BatchNorm running statistics from a retain batch.
    objectives: the task's losses (:data:`CLASSIFICATION` by default).
    reference: the parameters the run starts from, frozen, when the objectives
      need them (``Objectives.needs_reference``).
  """

  apply_fn: Callable
  num_classes: int
  init_fn: Callable | None = None
  state_update: Callable | None = None
  objectives: Objectives = CLASSIFICATION
  reference: Any = None

  def retain(self, name: str = "nll") -> Callable:
    """The retain objective ``name``: ``"nll"`` the task's own (cross-entropy when
    classifying), ``"kl"`` the KL divergence from the reference (``retain_loss``)."""
    if name == "kl":
      return self.objectives.retain_kl(self.apply_fn, self.reference)
    return self.objectives.retain(self.apply_fn, self.num_classes)

  def forget(self, name: str) -> Callable:
    """The forget objective ``name`` of the task, minimised (``forget_objective``)."""
    extra = {"reference": self.reference} if self.objectives.needs_reference else {}
    return self.objectives.forget(name, self.apply_fn, self.num_classes, **extra)


class MakeStep(Protocol):
  """``(ctx, settings, tx) -> step``: a method's pure ``(state, retain_batch,
  forget_batch) -> (state, metrics)`` from its resolved settings."""

  def __call__(self, ctx: Context, settings: Settings,
               tx: optax.GradientTransformation) -> train.Step: ...


class Prepare(Protocol):
  """``(ctx, settings, params, forget_xy, key) -> (params, update_mask or None)``."""

  def __call__(self, ctx: Context, settings: Settings, params: Any, forget_xy: tuple,
               key: jax.Array) -> tuple[Any, Any]: ...


class CheckSettings(Protocol):
  """``(settings, params) -> None``, a ValueError for bad settings."""

  def __call__(self, settings: Settings, params: Any) -> None: ...


class WrapTx(Protocol):
  """``(settings, tx, total_steps) -> tx``: the method's addition to the optimiser."""

  def __call__(self, settings: Settings, tx: optax.GradientTransformation,
               total_steps: int) -> optax.GradientTransformation: ...


class Method(NamedTuple):
  """How a method runs.

  Attributes:
    make_step: ``(ctx, settings, tx) -> step``; ``settings`` are the method's
      resolved :class:`Settings`.
    iterate: the set an epoch walks through, ``"retain"`` or ``"forget"``; the
      other set's batches cycle alongside.
    from_scratch: start from a fresh init (retrain) instead of the original.
    prepare: optional ``(ctx, settings, params, forget_xy, key) -> (params,
      update_mask)`` run once before the steps (saliency, trimming); a mask
      restricts every optimiser update, weight decay included.
    check: optional ``(settings, params)`` raising ValueError on bad settings,
      run before any work.
    wrap_tx: optional ``(settings, tx, total_steps) -> tx`` adding to the
      configured SGD (``total_steps``: the run's length, for schedules).
    defaults: settings laid under the method's own config section (NPO's
      forget objective and weight).
    inherits: a method whose config section is laid under this one's (``lur``
      for ``lur_snip``, ``lur_npo``, ``lur_simnpo``).
    tasks: the built-in tasks (``config.task``) it runs on; ``None``: every task,
      a task of yours included.
    masked: ``prepare`` returns an update mask (a bool per parameter, SalUn's), which
      rides in the optimiser state (:func:`~lur_jax.masked_updates`); the planner counts it.
  """

  make_step: MakeStep
  iterate: str = "retain"
  from_scratch: bool = False
  prepare: Prepare | None = None
  check: CheckSettings | None = None
  wrap_tx: WrapTx | None = None
  defaults: dict | None = None
  inherits: str | None = None
  tasks: tuple[str, ...] | None = None
  masked: bool = False


def _diagnosed(ctx: Context, objective, tx, forget="ga"):
  return train.objective_step(
      objective, tx, retain_loss_fn=ctx.retain(),
      forget_loss_fn=ctx.forget(forget),
      state_update=ctx.state_update)


def _finetune(ctx, settings, tx):
  ce = ctx.retain()
  return train.objective_step(lambda p, rb, fb: ce(p, rb), tx, state_update=ctx.state_update)


def _gradient_ascent(ctx, settings, tx):
  ascent = ctx.forget("ga")
  return train.objective_step(lambda p, rb, fb: ascent(p, fb), tx,
                              state_update=ctx.state_update)


def _random_labels(ctx, settings, tx):
  ce = ctx.retain()
  relabel = ctx.forget("rl")
  return _diagnosed(ctx, lambda p, rb, fb: ce(p, rb) + relabel(p, fb), tx, forget="rl")


def _graddiff(ctx, settings, tx):
  """CE_r + λ·L_u: LUR without the lookahead (α = 0), ``ga`` (−CE_f) by default; NPO and
  SimNPO are this with their forget objectives."""
  ce = ctx.retain(settings.get("retain_loss", "nll"))
  objective = settings.get("forget_objective", "ga")
  unlearn = ctx.forget(objective)
  weight = settings.forget_weight
  return _diagnosed(ctx, lambda p, rb, fb: ce(p, rb) + weight * unlearn(p, fb), tx,
                    forget=objective)


def _lur(ctx, settings, tx):
  return train.lur_step(
      tx, retain_loss_fn=ctx.retain(),
      forget_loss_fn=ctx.forget(settings.forget_objective),
      inner_lr=settings.inner_lr, inner_steps=settings.inner_steps,
      lookahead=settings.lookahead, retain_weight=settings.retain_weight,
      forget_weight=settings.forget_weight, mode=settings.mode, remat=settings.remat,
      diagnostics=settings.diagnostics, state_update=ctx.state_update)



def _check_lur(settings, params):
  del params
  checks.positive(settings.inner_lr, "lur.inner_lr")
  try:
    lur.check_settings(settings.lookahead, settings.mode, settings.inner_steps)
  except ValueError as e:
    raise ValueError(f"lur.{e}") from None


def check_objectives(settings, objectives: Objectives) -> None:
  """ValueError when a method's ``forget_objective`` or ``retain_loss`` is not one the
  task's objectives provide."""
  name = settings.name
  if "forget_objective" in settings:
    checks.one_of(f"{name}.forget_objective", settings.forget_objective,
                  objectives.forget_names)
  retain = settings.get("retain_loss", "nll")
  checks.one_of(f"{name}.retain_loss", retain,
                ("nll", "kl") if objectives.retain_kl is not None else ("nll",))


def _check_lur_snip(settings, params):
  _check_lur(settings, params)
  _check_trim(settings, params)


def _check_l1(settings, params):
  del params
  checks.positive(settings.alpha, "l1_sparse.alpha")


def _check_salun(settings, params):
  saliency.check_fraction(settings.gamma, "salun.gamma")
  saliency.select_layers(params, settings.layers)


def _salun_mask(ctx, settings, params, forget_xy, key):
  """SalUn: updates only for the top-γ weights by |∇ loss_f| over D_f."""
  grads = saliency.forget_gradients(ctx.objectives.per_example(ctx.apply_fn), params,
                                    *forget_xy, batch_size=settings.forget_batch_size,
                                    absolute=False, key=key)
  selected = saliency.broadcast_mask(saliency.select_layers(params, settings.layers), params)
  scores = jax.tree.map(jnp.abs, grads)
  return params, saliency.top_fraction_mask(scores, selected, settings.gamma)


def _check_trim(settings, params):
  saliency.check_fraction(settings.sparsity, f"{settings.name}.sparsity")
  saliency.select_layers(params, settings.layers)


def _trim(ctx, settings, params, forget_xy, key):
  """Scissorhands' trim: re-initialise the most forget-salient weights."""
  abs_grads = saliency.forget_gradients(ctx.objectives.per_example(ctx.apply_fn), params,
                                        *forget_xy, batch_size=settings.forget_batch_size,
                                        absolute=True)
  scores = jax.tree.map(lambda p, g: jnp.abs(p * g), params, abs_grads)
  selected = saliency.select_layers(params, settings.layers)
  trimmed, _ = saliency.trim(params, ctx.init_fn(key), scores, selected, settings.sparsity)
  return trimmed, None


def _shs_repair(ctx, settings, tx):
  """CE_r − λ·CE_f, projected (GEM) when it would lower the forget objective −CE_f."""
  ce = ctx.retain()
  ascent = ctx.forget("ga")
  weight = settings.forget_weight

  def project(grad, forget_grad):
    dot = optax.tree.vdot(grad, forget_grad)
    norm2 = optax.tree.vdot(forget_grad, forget_grad)
    coef = jnp.where(dot < 0, dot / jnp.maximum(norm2, 1e-30), 0.0)
    return optax.tree.add_scale(grad, -coef, forget_grad)

  def value_and_grad(p, rb, fb):
    loss, grad = jax.value_and_grad(lambda q: ce(q, rb) - weight * ce(q, fb))(p)
    return loss, project(grad, jax.grad(ascent)(p, fb))

  return train.gradient_step(value_and_grad, tx, retain_loss_fn=ce, forget_loss_fn=ascent,
                             state_update=ctx.state_update)


def _l1_tx(settings, tx, total_steps):
  """FT's optimiser plus α_t·sign(θ), α_t decaying linearly from α to 0 over the run."""
  schedule = optax.linear_schedule(settings.alpha, 0.0, total_steps)
  return optax.chain(train.l1_penalty(schedule), tx)


_CLASSIFIERS = ("classification", "language")  # labels (or next tokens) to relabel and trim
_TOFU = ("tofu",)  # answer-only losses and a frozen reference

#: Every unlearning method by name, as ``methods=`` and the config sections name them.
METHODS: dict[str, Method] = {
    "retrain": Method(_finetune, from_scratch=True),
    "ft": Method(_finetune, tasks=(*_CLASSIFIERS, *_TOFU)),
    "ga": Method(_gradient_ascent, iterate="forget"),
    "rl": Method(_random_labels, tasks=(*_CLASSIFIERS, "diffusion")),
    "graddiff": Method(_graddiff),
    # NPO (β in the task's objectives) and SimNPO: GradDiff with their forget losses and
    # open-unlearning's TOFU weights γ (α = 1); language tasks only (Objectives.forget_names).
    "npo": Method(_graddiff, defaults={"forget_objective": "npo", "forget_weight": 1.0},
                  tasks=_TOFU),
    "simnpo": Method(_graddiff, defaults={"forget_objective": "simnpo",
                                          "forget_weight": 0.125}, tasks=_TOFU),
    "lur": Method(_lur, check=_check_lur),
    "lur_npo": Method(_lur, check=_check_lur, defaults={"forget_objective": "npo"},
                      inherits="lur", tasks=_TOFU),
    "lur_simnpo": Method(_lur, check=_check_lur, defaults={"forget_objective": "simnpo"},
                         inherits="lur", tasks=_TOFU),
    "l1_sparse": Method(_finetune, wrap_tx=_l1_tx, check=_check_l1, tasks=_CLASSIFIERS),
    "salun": Method(_random_labels, prepare=_salun_mask, check=_check_salun,
                    tasks=(*_CLASSIFIERS, "diffusion"), masked=True),
    "shs": Method(_shs_repair, prepare=_trim, check=_check_trim, tasks=_CLASSIFIERS),
    "lur_snip": Method(_lur, prepare=_trim, check=_check_lur_snip, inherits="lur",
                       tasks=_CLASSIFIERS),
}


def for_task(task: str) -> tuple[str, ...]:
  """The methods that run on ``task``, in registry order."""
  return tuple(n for n, m in METHODS.items() if m.tasks is None or task in m.tasks)


def check_task(names: list[str], task: str) -> None:
  """ValueError for a method that does not run on ``task`` (:attr:`Method.tasks`)."""
  allowed = for_task(task)
  for name in names:
    if name not in allowed:
      raise ValueError(f"methods: {name!r} does not run on task={task!r}; allowed: "
                       f"{', '.join(allowed)}")


def parse_methods(spec) -> list[str]:
  """``"retrain,lur"`` -> ``["retrain", "lur"]``; ValueError on unknown names."""
  names = [s.strip() for s in str(spec).split(",") if s.strip()]
  if not names:
    raise ValueError(f"methods={spec!r}; allowed: a comma-separated subset of "
                     f"{', '.join(METHODS)}")
  for name in names:
    if name not in METHODS:
      raise ValueError(f"methods: unknown method {name!r}; allowed: {', '.join(METHODS)}")
  if len(set(names)) != len(names):
    raise ValueError(f"methods={spec!r} names a method twice")
  return names
