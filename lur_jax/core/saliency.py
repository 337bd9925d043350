"""Weight saliency on the forget set: SalUn's gradient masks and Scissorhands' trim.

Layers are chosen by name: a parameter is selected when one of the names is a
component of its path (``"fc"`` selects ``fc/kernel`` and ``fc/bias``).
Normalisation layers are never selected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

NORM_MARKERS = ("norm", "bn")  # path components containing these are norm layers


def _path_names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def _is_norm(names) -> bool:
  return any(m in n.lower() for n in names for m in NORM_MARKERS)


def select_layers(params, layers: Sequence[str] | str):
  """A boolean pytree: True for leaves inside the named layers (norm layers never).

  A name selects a path component equal to it or extending it with ``_``
  (``"layer3"`` selects ``layer3_0`` and ``layer3_1``).

  Args:
    params: the params pytree.
    layers: layer names, or ``"all"``, or a comma-separated string of names.

  Returns:
    A pytree like ``params`` with one bool per leaf.

  Raises:
    ValueError: when a name selects no parameter.
  """
  if isinstance(layers, str):
    layers = [s.strip() for s in layers.split(",") if s.strip()]
  everything = list(layers) == ["all"]
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  names = {tuple(_path_names(path)) for path, _ in flat}
  def inside(layer, n):
    return any(part == layer or part.startswith(layer + "_") for part in n)

  for layer in ([] if everything else layers):
    if not any(inside(layer, n) and not _is_norm(n) for n in names):
      available = sorted({part for n in names for part in n[:-1] if not _is_norm(n)})
      raise ValueError(f"layer {layer!r} matches no parameter; allowed: all, "
                       f"{', '.join(available)}")
  def chosen(path, _):
    n = _path_names(path)
    return not _is_norm(n) and (everything or any(inside(layer, n) for layer in layers))
  return jax.tree_util.tree_map_with_path(chosen, params)


def check_fraction(value, key: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
    raise ValueError(f"{key}={value!r}; allowed: a number in (0, 1)")


def forget_gradients(loss_fn: Callable, params, x, y, *, batch_size: int,
                     absolute: bool, key: jax.Array | None = None) -> dict:
  """The gradient of a loss summed over a set, batch by batch (SalUn's saliency).

  Args:
    loss_fn: ``(params, batch) -> [B]`` per-example losses.
    params: the parameters θ.
    x, y: the set's inputs ``[N, ...]`` and labels ``[N]``, padded to whole
      batches with zero-weighted examples.
    batch_size: examples per gradient evaluation.
    absolute: sum ``|∇loss|`` per batch instead of ``∇loss``.
    key: if given, batch i also holds ``"key": fold_in(key, i)`` (random losses).

  Returns:
    A pytree like ``params``: Σ over batches of ∇ Σ_batch loss (or of its
    absolute value when ``absolute``).
  """
  n = len(y)
  x, y = jnp.asarray(x), jnp.asarray(y)
  num = -(-n // batch_size)
  idx = np.arange(num * batch_size) % n
  weight = (np.arange(num * batch_size) < n).astype(np.float32)
  idx, weight = idx.reshape(num, batch_size), weight.reshape(num, batch_size)

  def body(total, chunk):
    i, w, c = chunk
    batch = {"x": x[i], "y": y[i]}
    if key is not None:
      batch["key"] = jax.random.fold_in(key, c)
    g = jax.grad(lambda p: jnp.sum(w * loss_fn(p, batch)))(params)
    if absolute:
      g = jax.tree.map(jnp.abs, g)
    return jax.tree.map(jnp.add, total, g), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  chunks = (jnp.asarray(idx), jnp.asarray(weight), jnp.arange(num))
  return jax.jit(lambda: lax.scan(body, zeros, chunks)[0])()


def top_fraction_mask(scores, selected, fraction: float):
  """True for the top ``fraction`` of selected entries by score (one global threshold).

  Args:
    scores: a pytree of arrays (e.g. :func:`forget_gradients`).
    selected: a pytree of bools like ``scores`` (per leaf or per entry).
    fraction: in (0, 1]; at least one entry is kept.

  Returns:
    A pytree of bool arrays like ``scores``, False outside ``selected``.
  """
  flat = jnp.concatenate([s[m].ravel() for s, m in zip(
      jax.tree.leaves(scores), jax.tree.leaves(selected)) if np.any(m)])
  k = max(1, int(round(fraction * flat.size)))
  threshold = jnp.sort(flat)[-k]
  return jax.tree.map(lambda s, m: (s >= threshold) & m, scores, selected)


class MaskState(NamedTuple):
  """:func:`masked_updates`' state: the mask itself, so that a compiled step takes it as an
  argument (sharded as the parameters, checkpointed with the optimiser) instead of holding a
  copy of it as a constant."""

  mask: Any


def masked_updates(mask=None) -> optax.GradientTransformation:
  """An optax transform zeroing every update outside the mask (SalUn's masked step).

  Args:
    mask: a pytree of bool arrays like the parameters, the state ``init`` starts from; the
      update reads the mask from its state (``None``: a transform for a state that already
      holds one).

  Returns:
    An ``optax.GradientTransformation``; chain it last, after weight decay, so
    masked weights do not move at all.
  """
  def init(params):
    del params
    if mask is None:
      raise ValueError("masked_updates(): no mask to start from; allowed: a pytree of bool "
                       "arrays like the parameters")
    return MaskState(mask)

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: jnp.where(m, u, 0), updates, state.mask), state
  return optax.GradientTransformation(init, update)


def broadcast_mask(selected, params):
  """Expands a per-leaf boolean pytree to full-shape boolean arrays."""
  return jax.tree.map(lambda m, p: jnp.full(p.shape, bool(m)), selected, params)


def trim(params, fresh_params, saliency, selected, sparsity: float):
  """Scissorhands' trim: re-initialises the top (1 − sparsity) salient selected weights.

  Args:
    params: the trained params.
    fresh_params: a fresh initialisation, the values trimmed weights take.
    saliency: connection sensitivity ``|θ ⊙ Σ|∇CE_f||``, same structure.
    selected: per-leaf booleans from :func:`select_layers`.
    sparsity: the fraction of selected weights kept.

  Returns:
    ``(trimmed_params, reset_mask)``: the params with the trimmed weights
    replaced, and a bool pytree marking them.
  """
  reset = top_fraction_mask(saliency, broadcast_mask(selected, params), 1.0 - sparsity)
  return jax.tree.map(lambda p, f, r: jnp.where(r, f, p), params, fresh_params, reset), reset
