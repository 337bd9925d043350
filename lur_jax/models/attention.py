"""Causal attention that LUR's second-order modes can differentiate twice.

Four implementations of ``softmax(q kᵀ / √d + causal mask) v`` on ``[B, T, heads, head_dim]``
queries, keys and values (:func:`attend`; :func:`attend_grouped` for grouped-query heads at
given positions, as the pretrained decoder and its key-value cache need), picked by
``model.attention``:

- ``plain``: the ``[B, heads, T, T]`` scores in float32, then the weighted values.
- ``chunked``: the keys in chunks of ``chunk`` with an online softmax (a running maximum,
  normaliser and weighted sum per query), each chunk checkpointed twice
  (:func:`lur_jax.models.remat.twice`), so no ``T × T`` tensor is ever held, forward,
  backward, or in ``exact``'s second backward: memory linear in ``T``. Plain JAX
  throughout, so ``hvp`` (forward over reverse) and ``exact`` (reverse over reverse) go
  through it exactly; it equals ``plain`` to round-off.
- ``xla``: :func:`jax.nn.dot_product_attention` with ``implementation="xla"`` (plain JAX
  inside: twice differentiable).
- ``cudnn``: the same with ``implementation="cudnn"``, the fused GPU kernel: its custom VJP has
  no second derivative, so first-order methods may use it and LUR's ``hvp`` and ``exact``
  refuse it (:func:`check_twice_differentiable`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from lur_jax.models import remat

IMPLEMENTATIONS = ("plain", "chunked", "xla", "cudnn")
#: The implementations with no second derivative.
FIRST_ORDER_ONLY = ("cudnn",)
_MASKED = -1e30  # finite: exp(_MASKED - m) is an exact 0, and no inf - inf appears


def attend(q: jax.Array, k: jax.Array, v: jax.Array, implementation: str = "plain",
           chunk: int = 128) -> jax.Array:
  """Causal multi-head attention.

  Args:
    q, k, v: ``[B, T, heads, head_dim]``, in the compute dtype.
    implementation: one of :data:`IMPLEMENTATIONS`.
    chunk: keys per chunk for ``chunked`` (the last one padded with masked keys).

  Returns:
    ``[B, T, heads, head_dim]`` in ``v``'s dtype.

  Raises:
    ValueError: for an unknown implementation or a ``chunk`` < 1.
  """
  if implementation == "plain":  # four-dimensional: XLA:CPU runs it faster than one group
    return plain(q, k, v)
  return attend_grouped(q[:, :, :, None], k, v, None, None, implementation, chunk)


def attend_grouped(q: jax.Array, k: jax.Array, v: jax.Array, positions: jax.Array | None,
                   keys: jax.Array | None = None, implementation: str = "plain",
                   chunk: int = 128) -> jax.Array:
  """Grouped-query attention by positions: a query sees the keys at or before its position.

  Args:
    q: ``[B, T, kv_heads, groups, head_dim]`` (query head ``h · groups + g`` reads key/value
      head ``h``).
    k, v: ``[B, S, kv_heads, head_dim]``.
    positions: the queries' positions ``[B, T]``; ``None``: ``0 .. T − 1`` with ``S = T``,
      the causal mask, which ``xla`` and ``cudnn`` then apply themselves.
    keys: the keys' positions ``[B, S]``; ``None``: ``positions``.
    implementation, chunk: as in :func:`attend`. With given positions ``xla`` and ``cudnn``
      both run :func:`jax.nn.dot_product_attention`'s ``xla`` path with the mask spelled out
      (generation with a KV cache, never differentiated).

  Returns:
    ``[B, T, kv_heads · groups, head_dim]`` in ``v``'s dtype.
  """
  b, t, kv, groups, d = q.shape
  if implementation in ("xla", "cudnn"):
    flat = q.reshape(b, t, kv * groups, d)
    if positions is None:
      return jax.nn.dot_product_attention(flat, k, v, is_causal=True,
                                          implementation=implementation)
    mask = _seen(positions, positions if keys is None else keys)[:, None]
    return jax.nn.dot_product_attention(flat, k, v, mask=mask, implementation="xla")
  if positions is None:
    positions, keys = _causal(q)
  keys = positions if keys is None else keys
  if implementation == "plain":
    out = _plain_grouped(q, k, v, positions, keys)
  elif implementation == "chunked":
    out = _chunked_grouped(q, k, v, positions, keys, chunk)
  else:
    raise ValueError(f"model.attention={implementation!r}; allowed: "
                     f"{', '.join(IMPLEMENTATIONS)}")
  return out.reshape(b, t, kv * groups, d)


def _seen(positions, keys):
  """``[B, T, S]``: whether each query sees each key."""
  return keys[:, None, :] <= positions[:, :, None]


def _plain_grouped(q, k, v, positions, keys):
  """The scores whole, ``[B, kv_heads, groups, T, S]`` in float32 (float64 for float64)."""
  scores = jnp.einsum("bqhgd,bkhd->bhgqk", q, k).astype(_wide(q)) / math.sqrt(q.shape[-1])
  seen = _seen(positions, keys)[:, None, None]
  weights = jax.nn.softmax(jnp.where(seen, scores, _MASKED), -1)
  return jnp.einsum("bhgqk,bkhd->bqhgd", weights.astype(v.dtype), v)


def plain(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """The scores whole: ``[B, heads, T, T]`` in float32 (float64 for float64 inputs)."""
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(_wide(q)) / jnp.sqrt(q.shape[-1])
  causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))
  weights = jax.nn.softmax(jnp.where(causal, scores, _MASKED), axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def chunked(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int) -> jax.Array:
  """Keys in chunks of ``chunk``, an online softmax over them (see the module's docstring)."""
  return _chunked_grouped(q[:, :, :, None], k, v, *_causal(q), chunk)[:, :, :, 0]


def _causal(q):
  """The positions ``0 .. T − 1`` of ``q``'s queries, twice: as queries and as keys."""
  positions = jnp.broadcast_to(jnp.arange(q.shape[1]), q.shape[:2])
  return positions, positions


def _chunked_grouped(q, k, v, positions, keys, chunk):
  """:func:`chunked` for grouped queries at ``positions`` and keys at ``keys``.

  The running maximum is a shift the result does not depend on, so it is held out of the
  derivatives (``stop_gradient``): every derivative, of any order, is the exact one. A chunk
  whose keys a query cannot see adds terms that the first seen key's rescaling (by
  ``exp(_MASKED − score)``) makes an exact 0.
  """
  b, t, kv, groups, d = q.shape
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
    raise ValueError(f"model.attention_chunk={chunk!r}; allowed: an int >= 1")
  chunk = min(chunk, k.shape[1])
  pad = -k.shape[1] % chunk  # keys past the end: at a position no query reaches
  k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (k, v))
  keys = jnp.pad(keys, ((0, 0), (0, pad)), constant_values=jnp.iinfo(jnp.int32).max)
  chunks = k.shape[1] // chunk
  wide = _wide(q)
  qf = q.astype(wide) / math.sqrt(d)
  split = lambda a: a.reshape(b, chunks, chunk, *a.shape[2:]).swapaxes(0, 1)
  step = remat.twice(functools.partial(_chunk, qf, positions))
  start = (jnp.full((b, kv, groups, t), _MASKED, wide), jnp.zeros((b, kv, groups, t), wide),
           jnp.zeros((b, t, kv, groups, d), wide))
  (_, total, weighted), _ = lax.scan(step, start, (split(k), split(v), split(keys)))
  return (weighted / _per_query(total)).astype(v.dtype)


def _chunk(qf, positions, carry, inputs):
  """One chunk of keys: the running ``(maximum, normaliser, weighted sum)`` updated."""
  best, total, weighted = carry
  k, v, keys = inputs
  scores = jnp.einsum("bqhgd,bkhd->bhgqk", qf, k.astype(qf.dtype))
  scores = jnp.where(_seen(positions, keys)[:, None, None], scores, _MASKED)
  new_best = lax.stop_gradient(jnp.maximum(best, scores.max(-1)))
  p = jnp.exp(scores - new_best[..., None])
  kept = jnp.exp(best - new_best)
  total = total * kept + p.sum(-1)
  weighted = weighted * _per_query(kept) + jnp.einsum("bhgqk,bkhd->bqhgd", p,
                                                      v.astype(qf.dtype))
  return (new_best, total, weighted), None


def _per_query(x):
  """``[B, kv, groups, T]`` -> ``[B, T, kv, groups, 1]``, to scale the weighted values."""
  return x.transpose(0, 3, 1, 2)[..., None]


def _wide(x: jax.Array):
  """The softmax's dtype: float32, or float64 for float64 inputs."""
  return jnp.promote_types(x.dtype, jnp.float32)


def check_twice_differentiable(implementation: str, mode: str, method: str = "lur") -> None:
  """Refuses a fused kernel for LUR's second-order modes.

  Args:
    implementation: ``model.attention``.
    mode: the LUR mode (``first_order``, ``hvp`` or ``exact``).
    method: the method, for the message.

  Raises:
    ValueError: for ``cudnn`` with ``hvp`` or ``exact``.
  """
  if implementation in FIRST_ORDER_ONLY and mode != "first_order":
    raise ValueError(f"model.attention={implementation!r} with {method}.mode={mode!r}: the "
                     "fused kernel has no second derivative; allowed: model.attention=plain, "
                     "chunked or xla, or mode=first_order")
