"""Per-example losses and the objective factories the methods are built from.

A batch is a dict with ``"x"`` (inputs) and ``"y"`` (int labels); the ``rl``
objective also reads ``"key"``, a PRNG key the training step folds in.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

ApplyFn = Callable[..., jax.Array]

FORGET_OBJECTIVES = ("ga", "rl")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels, shape ``[B]``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def true_class_confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax probability of the true label, p_y(x)."""
  probs = jax.nn.softmax(logits)
  return jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]


def random_wrong_labels(key: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """Uniform labels drawn from the classes other than the true one."""
  shift = jax.random.randint(key, labels.shape, 1, num_classes)
  return (labels + shift) % num_classes


def ce_objective(apply_fn: ApplyFn) -> Callable:
  """Mean cross-entropy: ``(params, batch) -> scalar`` (the retain objective)."""
  def loss(params, batch):
    return cross_entropy(apply_fn(params, batch["x"]), batch["y"]).mean()
  return loss


def forget_objective(name: str, apply_fn: ApplyFn, num_classes: int) -> Callable:
  """The unlearning objective, to be minimised.

  Args:
    name: ``"ga"`` (gradient ascent: minus the cross-entropy) or ``"rl"``
      (cross-entropy to random labels other than the true one; reads
      ``batch["key"]``).
    apply_fn: ``(params, x) -> logits``.
    num_classes: number of classes (for ``rl``).

  Returns:
    A pure ``(params, batch) -> scalar``.
  """
  ce = ce_objective(apply_fn)
  if name == "ga":
    return lambda params, batch: -ce(params, batch)
  if name == "rl":
    def relabel(params, batch):
      labels = random_wrong_labels(batch["key"], batch["y"], num_classes)
      return ce(params, {"x": batch["x"], "y": labels})
    return relabel
  raise ValueError(f"forget objective {name!r}; allowed: {', '.join(FORGET_OBJECTIVES)}")
