"""Per-example losses and the objective factories the methods are built from.

A batch is a dict with ``"x"`` (inputs) and ``"y"`` (int labels); the ``rl``
objective also reads ``"key"``, a PRNG key the training step folds in.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

ApplyFn = Callable[..., jax.Array]

FORGET_OBJECTIVES = ("ga", "rl")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels.

  Args:
    logits: ``[B, C]`` unnormalised log-probabilities.
    labels: ``[B]`` integer classes in ``0 .. C − 1``.

  Returns:
    ``[B]``: −log softmax(logits)[y] per example.
  """
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def true_class_confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax probability of the true label, p_y(x).

  Args:
    logits: ``[B, C]`` unnormalised log-probabilities.
    labels: ``[B]`` integer classes.

  Returns:
    ``[B]`` probabilities in [0, 1] (what MIA-efficacy attacks).
  """
  probs = jax.nn.softmax(logits)
  return jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]


def global_draw(draw: Callable, key: jax.Array, n: int, axis_name: str | None = None):
  """``draw(key, n)``, or under ``shard_map`` this device's ``n`` of the global draw.

  With ``axis_name``, ``draw`` runs for the whole global batch (every device
  draws the same numbers) and each device keeps its slice, so random
  objectives do not depend on how the batch is split.
  """
  if axis_name is None:
    return draw(key, n)
  size, i = lax.axis_size(axis_name), lax.axis_index(axis_name)
  return jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, i * n, n), draw(key, size * n))


def random_wrong_labels(key: jax.Array, labels: jax.Array, num_classes: int,
                        axis_name: str | None = None) -> jax.Array:
  """Uniform labels drawn from the classes other than the true one.

  Args:
    key: a PRNG key.
    labels: ``[B]`` integer true classes.
    num_classes: the number of classes C (at least 2).
    axis_name: inside ``shard_map``, the data axis: ``labels`` is this device's
      slice of the global batch and gets its slice of the global draw, so the
      labels do not depend on how the batch is split.

  Returns:
    ``[B]`` int labels, each uniform over the C − 1 wrong classes.
  """
  shift = global_draw(lambda k, n: jax.random.randint(k, (n, *labels.shape[1:]), 1, num_classes),
                      key, labels.shape[0], axis_name)
  return (labels + shift) % num_classes


def ce_objective(apply_fn: ApplyFn, axis_name: str | None = None) -> Callable:
  """Mean cross-entropy, the retain objective.

  Args:
    apply_fn: ``(params, x) -> logits [B, C]``.
    axis_name: inside ``shard_map``, the data axis: the mean is then over the
      global batch (``lax.pmean`` of the per-device means; devices hold equal
      shares).

  Returns:
    A pure ``loss(params, batch) -> scalar``, ``batch`` a dict with ``"x"`` and
    ``"y"``.
  """
  def loss(params, batch):
    value = cross_entropy(apply_fn(params, batch["x"]), batch["y"]).mean()
    return value if axis_name is None else lax.pmean(value, axis_name)
  return loss


def forget_objective(name: str, apply_fn: ApplyFn, num_classes: int,
                     axis_name: str | None = None) -> Callable:
  """The unlearning objective, to be minimised.

  Args:
    name: ``"ga"`` (gradient ascent: minus the cross-entropy) or ``"rl"``
      (cross-entropy to random labels other than the true one; reads
      ``batch["key"]``).
    apply_fn: ``(params, x) -> logits``.
    num_classes: number of classes (for ``rl``).
    axis_name: the data axis inside ``shard_map`` (see :func:`ce_objective`).

  Returns:
    A pure ``(params, batch) -> scalar``.
  """
  ce = ce_objective(apply_fn, axis_name)
  if name == "ga":
    return lambda params, batch: -ce(params, batch)
  if name == "rl":
    def relabel(params, batch):
      labels = random_wrong_labels(batch["key"], batch["y"], num_classes, axis_name)
      return ce(params, {"x": batch["x"], "y": labels})
    return relabel
  raise ValueError(f"forget objective {name!r}; allowed: {', '.join(FORGET_OBJECTIVES)}")
