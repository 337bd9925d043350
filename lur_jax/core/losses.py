"""Per-example losses and the objective factories the methods are built from.

A batch is a dict with ``"x"`` (inputs) and ``"y"`` (int labels); the ``rl``
objective also reads ``"key"``, a PRNG key the training step folds in.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

ApplyFn = Callable[..., jax.Array]

FORGET_OBJECTIVES = ("ga", "rl")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels.

  Args:
    logits: ``[B, C]`` unnormalised log-probabilities.
    labels: ``[B]`` integer classes in ``0 .. C − 1``.

  Returns:
    ``[B]``: −log softmax(logits)[y] per example.

  Raises:
    TypeError: for labels that are not integers of shape ``[B]`` (one-hot labels, say).
  """
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != logits.shape[:-1]:
    raise TypeError(f"labels of dtype {labels.dtype} and shape {tuple(labels.shape)} for "
                    f"logits of shape {tuple(logits.shape)}; allowed: integer classes of shape "
                    f"{tuple(logits.shape[:-1])} (one-hot labels: labels.argmax(-1))")
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def field(batch, name: str, why: str):
  """``batch[name]``, or a ValueError naming what the batch holds and what it needs.

  Args:
    batch: a dict of arrays.
    name: the key a loss reads.
    why: what reads it (the message's subject).

  Returns:
    The array.
  """
  if not isinstance(batch, dict) or name not in batch:
    held = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise ValueError(f"{why}: the batch has no {name!r} (it holds {held}); allowed: a dict "
                     f"with {name!r}")
  return batch[name]


def next_token_nll(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """Per-position next-token cross-entropy of a causal language model: the one
  shifted cross-entropy every language-model loss and evaluation builds on.

  Args:
    logits: ``[B, T, V]``, position t predicting token t + 1.
    tokens: ``[B, T]`` int token ids.

  Returns:
    ``[B, T − 1]``: −log softmax(logits[:, t])[tokens[:, t + 1]].
  """
  return cross_entropy(logits[:, :-1], tokens[:, 1:])


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


def random_wrong_labels(key: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """Uniform labels drawn from the classes other than the true one.

  Args:
    key: a PRNG key.
    labels: ``[B]`` integer true classes.
    num_classes: the number of classes C (at least 2).

  Returns:
    ``[B]`` int labels, each uniform over the C − 1 wrong classes.
  """
  shift = jax.random.randint(key, labels.shape, 1, num_classes)
  return (labels + shift) % num_classes


def ce_objective(apply_fn: ApplyFn) -> Callable:
  """Mean cross-entropy, the retain objective.

  Args:
    apply_fn: ``(params, x) -> logits [B, C]``.

  Returns:
    A pure ``loss(params, batch) -> scalar``, ``batch`` a dict with ``"x"`` and
    ``"y"``.
  """
  def loss(params, batch):
    x, y = field(batch, "x", "cross-entropy"), field(batch, "y", "cross-entropy")
    return cross_entropy(apply_fn(params, x), y).mean()
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
      key = field(batch, "key", "rl's random labels (the study's steps add one per step)")
      labels = random_wrong_labels(key, field(batch, "y", "rl"), num_classes)
      return ce(params, {"x": batch["x"], "y": labels})
    return relabel
  raise ValueError(f"forget objective {name!r}; allowed: {', '.join(FORGET_OBJECTIVES)}")
