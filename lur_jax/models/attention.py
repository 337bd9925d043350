"""Causal attention that LUR's second-order modes can differentiate twice.

Four implementations of ``softmax(q kᵀ / √d + causal mask) v`` on ``[B, T, heads, head_dim]``
queries, keys and values, picked by ``model.attention``:

- ``plain``: the ``[B, heads, T, T]`` scores in float32, then the weighted values.
- ``chunked``: the keys in chunks of ``chunk`` with an online softmax (a running maximum,
  normaliser and weighted sum per query), each chunk under ``jax.checkpoint``, so no
  ``T × T`` tensor is ever held, forward or backward: memory linear in ``T``. Plain JAX
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

import jax
import jax.numpy as jnp
from jax import lax

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
  if implementation == "plain":
    return plain(q, k, v)
  if implementation == "chunked":
    return chunked(q, k, v, chunk)
  if implementation in ("xla", "cudnn"):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)
  raise ValueError(f"model.attention={implementation!r}; allowed: {', '.join(IMPLEMENTATIONS)}")


def plain(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """The scores whole: ``[B, heads, T, T]`` in float32 (float64 for float64 inputs)."""
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(_wide(q)) / jnp.sqrt(q.shape[-1])
  causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))
  weights = jax.nn.softmax(jnp.where(causal, scores, _MASKED), axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def chunked(q: jax.Array, k: jax.Array, v: jax.Array, chunk: int) -> jax.Array:
  """Keys in chunks of ``chunk``, an online softmax over them (see the module's docstring).

  The running maximum is a shift the result does not depend on, so it is held out of the
  derivatives (``stop_gradient``): every derivative, of any order, is the exact one.
  """
  b, t, heads, d = q.shape
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
    raise ValueError(f"model.attention_chunk={chunk!r}; allowed: an int >= 1")
  chunk = min(chunk, t)
  pad = -t % chunk  # keys past the end: later than every query, so masked
  k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (k, v))
  chunks = k.shape[1] // chunk
  wide = _wide(q)
  qf = q.astype(wide) / jnp.sqrt(d)
  keys = k.reshape(b, chunks, chunk, heads, d).swapaxes(0, 1)
  values = v.reshape(b, chunks, chunk, heads, d).swapaxes(0, 1)
  step = jax.checkpoint(functools.partial(_chunk, qf, chunk))
  start = (jnp.full((b, heads, t), _MASKED, wide), jnp.zeros((b, heads, t), wide),
           jnp.zeros((b, t, heads, d), wide))
  (_, total, weighted), _ = lax.scan(step, start, (keys, values, jnp.arange(chunks)))
  return (weighted / total.transpose(0, 2, 1)[..., None]).astype(v.dtype)


def _chunk(qf, chunk, carry, inputs):
  """One chunk of keys: the running ``(maximum, normaliser, weighted sum)`` updated."""
  best, total, weighted = carry
  k, v, index = inputs
  scores = jnp.einsum("bqhd,bkhd->bhqk", qf, k.astype(qf.dtype))
  queries = jnp.arange(qf.shape[1])[:, None]
  keys = index * chunk + jnp.arange(chunk)[None, :]
  scores = jnp.where(keys <= queries, scores, _MASKED)
  new_best = lax.stop_gradient(jnp.maximum(best, scores.max(-1)))
  p = jnp.exp(scores - new_best[..., None])
  kept = jnp.exp(best - new_best)
  total = total * kept + p.sum(-1)
  weighted = (weighted * kept.transpose(0, 2, 1)[..., None]
              + jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(qf.dtype)))
  return (new_best, total, weighted), None


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
