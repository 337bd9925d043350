"""Unlearning methods, picked by name from ``METHODS``.

Every method builds a pure step ``(state, retain_batch, forget_batch) ->
(state, metrics)`` from the same :class:`Context`; adding a baseline is one
function and one registry entry.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import optax

from lur_jax import losses, train


class Context(NamedTuple):
  apply_fn: Callable
  num_classes: int


class Method(NamedTuple):
  """How a method runs.

  Attributes:
    make_step: ``(ctx, settings, tx) -> step``; ``settings`` is the method's
      resolved config section.
    iterate: the set an epoch walks through, ``"retain"`` or ``"forget"``; the
      other set's batches cycle alongside.
    from_scratch: start from a fresh init (retrain) instead of the original.
  """

  make_step: Callable[[Context, Any, optax.GradientTransformation], train.Step]
  iterate: str = "retain"
  from_scratch: bool = False


def _diagnosed(ctx: Context, objective, tx, forget="ga"):
  return train.objective_step(
      objective, tx, retain_loss_fn=losses.ce_objective(ctx.apply_fn),
      forget_loss_fn=losses.forget_objective(forget, ctx.apply_fn, ctx.num_classes))


def _finetune(ctx, settings, tx):
  ce = losses.ce_objective(ctx.apply_fn)
  return train.objective_step(lambda p, rb, fb: ce(p, rb), tx)


def _gradient_ascent(ctx, settings, tx):
  ascent = losses.forget_objective("ga", ctx.apply_fn, ctx.num_classes)
  return train.objective_step(lambda p, rb, fb: ascent(p, fb), tx)


def _random_labels(ctx, settings, tx):
  ce = losses.ce_objective(ctx.apply_fn)
  relabel = losses.forget_objective("rl", ctx.apply_fn, ctx.num_classes)
  return _diagnosed(ctx, lambda p, rb, fb: ce(p, rb) + relabel(p, fb), tx, forget="rl")


def _graddiff(ctx, settings, tx):
  ce = losses.ce_objective(ctx.apply_fn)
  weight = settings.forget_weight
  return _diagnosed(ctx, lambda p, rb, fb: ce(p, rb) - weight * ce(p, fb), tx)


def _lur(ctx, settings, tx):
  return train.lur_step(
      tx, retain_loss_fn=losses.ce_objective(ctx.apply_fn),
      forget_loss_fn=losses.forget_objective(settings.forget_objective, ctx.apply_fn,
                                             ctx.num_classes),
      inner_lr=settings.inner_lr, inner_steps=settings.inner_steps,
      lookahead=settings.lookahead, retain_weight=settings.retain_weight,
      forget_weight=settings.forget_weight, mode=settings.mode, remat=settings.remat,
      diagnostics=settings.diagnostics)


METHODS: dict[str, Method] = {
    "retrain": Method(_finetune, from_scratch=True),
    "ft": Method(_finetune),
    "ga": Method(_gradient_ascent, iterate="forget"),
    "rl": Method(_random_labels),
    "graddiff": Method(_graddiff),
    "lur": Method(_lur),
}


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
