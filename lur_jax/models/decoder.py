"""Pretrained decoder-only language models in Flax: the Llama family and GPT-2.

One module, :class:`Decoder`, reads the shape of a Hugging Face checkpoint
(:class:`DecoderConfig`, from its ``config.json``):

- ``llama`` (Llama 2 and 3.x, ``rope_scaling`` ``linear`` and ``llama3``), ``mistral`` (full
  causal attention: sequences up to its ``sliding_window``) and ``qwen2`` (biases on the
  query, key and value projections): RMSNorm, rotary positions in the half-split form of
  ``transformers``, grouped-query attention, a SwiGLU MLP, a tied or untied head;
- ``gemma`` (Gemma 1): the Llama block with RMSNorm scaling by ``1 + weight`` in float32, the
  embedding scaled by √width, a GeGLU MLP (``gelu_pytorch_tanh``), a tied head;
- ``gpt2``: learned positions, LayerNorm with biases, ``gelu_new``, a tied head.

Every parameter carries logical axis names (``vocab``, ``embed``, ``heads``, ``kv``, ``mlp``,
``layers``; :data:`lur_jax.training.sharding.RULES`), the blocks are stacked with
``nn.scan`` (one compiled block whatever the depth) and optionally rematerialised, parameters
are kept in the checkpoint's or the asked dtype and compute runs in ``dtype``. Nothing in it
is a fused kernel, so LUR's ``hvp`` and ``exact`` modes differentiate it twice.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lur_jax.models import attention, remat
from lur_jax.training import sharding

FAMILIES = ("llama", "gpt2")
REMAT = ("none", "block")
ACTIVATIONS = ("silu", "gelu_tanh")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """A decoder's shape, as a checkpoint's ``config.json`` gives it.

  Attributes:
    family: ``"llama"`` (also Mistral and Qwen2) or ``"gpt2"``.
    vocab, width, depth: vocabulary, hidden size, layers.
    heads, kv_heads, head_dim: query heads, key/value heads (grouped-query attention when
      fewer), and each head's size.
    mlp: the MLP's hidden size.
    norm_eps: the RMSNorm or LayerNorm epsilon.
    max_positions: the longest sequence (GPT-2's position table).
    rope_theta: the rotary base.
    rope_scaling: ``()``, or ``(("rope_type", "linear" | "llama3"), (key, value), ...)``.
    qkv_bias: biases on the query, key and value projections (Qwen2).
    tied: the head is the embedding's transpose.
    sliding_window: Mistral's attention window (0: none); longer inputs are refused.
    norm_offset: RMSNorm scales by ``1 + weight``, in float32 (Gemma).
    embed_scale: the embedding is multiplied by √width (Gemma).
    activation: the gated MLP's ``"silu"`` (SwiGLU) or ``"gelu_tanh"`` (GeGLU, Gemma).
    dtype: the compute dtype, ``"float32"`` or ``"bfloat16"``.
    remat: ``"none"`` or ``"block"`` (each layer rematerialised for the first and the second
      derivative: :mod:`lur_jax.models.remat`).
    attention: ``"plain"``, ``"chunked"``, ``"xla"`` or ``"cudnn"``
      (:mod:`lur_jax.models.attention`).
    attention_chunk: keys per chunk for ``chunked``.
    model_type: the checkpoint's ``model_type`` (written back on export).
  """

  family: str
  vocab: int
  width: int
  depth: int
  heads: int
  kv_heads: int
  head_dim: int
  mlp: int
  norm_eps: float
  max_positions: int
  rope_theta: float = 10_000.0
  rope_scaling: tuple = ()
  qkv_bias: bool = False
  tied: bool = False
  sliding_window: int = 0
  norm_offset: bool = False
  embed_scale: bool = False
  activation: str = "silu"
  dtype: str = "float32"
  remat: str = "none"
  attention: str = "plain"
  attention_chunk: int = 128
  model_type: str = ""

  def check(self) -> None:
    """Raises ValueError naming the first bad field."""
    if self.family not in FAMILIES:
      raise ValueError(f"family={self.family!r}; allowed: {', '.join(FAMILIES)}")
    for name in ("vocab", "width", "depth", "heads", "kv_heads", "head_dim", "mlp",
                 "max_positions", "attention_chunk"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}; allowed: an int >= 1")
    if self.heads % self.kv_heads:
      raise ValueError(f"heads={self.heads} with kv_heads={self.kv_heads}; allowed: "
                       "query heads that divide into groups of the key/value heads")
    if self.family == "llama" and self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim}; allowed: an even size (rotary halves)")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"dtype={self.dtype!r}; allowed: float32, bfloat16")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"activation={self.activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    if self.remat not in REMAT:
      raise ValueError(f"remat={self.remat!r}; allowed: {', '.join(REMAT)}")
    if self.attention not in attention.IMPLEMENTATIONS:
      raise ValueError(f"attention={self.attention!r}; allowed: "
                       f"{', '.join(attention.IMPLEMENTATIONS)}")
    kind = dict(self.rope_scaling).get("rope_type", "default")
    if kind not in ("default", "linear", "llama3"):
      raise ValueError(f"rope_scaling rope_type={kind!r}; allowed: default, linear, llama3")


def inverse_frequencies(config: DecoderConfig) -> jax.Array:
  """The rotary inverse frequencies ``[head_dim / 2]``, scaled as ``transformers`` does
  (``linear``: divided by the factor; ``llama3``: long wavelengths divided by it, a smooth
  blend between)."""
  d = config.head_dim
  inv = 1.0 / (config.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  scaling = dict(config.rope_scaling)
  kind = scaling.get("rope_type", "default")
  if kind == "linear":
    return inv / scaling["factor"]
  if kind != "llama3":
    return inv
  factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
  old = scaling["original_max_position_embeddings"]
  wavelen = 2 * math.pi / inv
  scaled = jnp.where(wavelen > old / low, inv / factor, inv)
  smooth = (old / wavelen - low) / (high - low)
  blended = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old / high) & (wavelen <= old / low)
  return jnp.where(medium, blended, scaled)


def _rotate(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """``x [B, T, heads, head_dim]`` rotated (``transformers``' ``rotate_half`` form)."""
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], -1)
  return (x * cos + rotated * sin).astype(x.dtype)


def _param(module: nn.Module, name: str, shape: tuple, axes: tuple, init=None):
  init = init or nn.initializers.normal(0.02)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def _norm(module: nn.Module, x: jax.Array, name: str, config: DecoderConfig) -> jax.Array:
  """RMSNorm (Llama) or LayerNorm (GPT-2), in float32, cast back to ``x``'s dtype."""
  scale = _param(module, f"{name}_scale", (config.width,), ("embed",),
                 nn.initializers.zeros if config.norm_offset else nn.initializers.ones)
  h = x.astype(jnp.float32)
  if config.family == "llama":
    h = h * jax.lax.rsqrt(jnp.mean(h * h, -1, keepdims=True) + config.norm_eps)
    if config.norm_offset:  # Gemma: (x * (1 + w)) in float32, then cast
      return (h * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)
    return (scale * h.astype(x.dtype)).astype(x.dtype)
  bias = _param(module, f"{name}_bias", (config.width,), ("embed",), nn.initializers.zeros)
  mean = h.mean(-1, keepdims=True)
  var = jnp.mean(jnp.square(h - mean), -1, keepdims=True)
  return ((h - mean) * jax.lax.rsqrt(var + config.norm_eps) * scale + bias).astype(x.dtype)


def _dense(module, x, name, shape, axes, spec, bias_shape=None, bias_axes=None):
  kernel = _param(module, name, shape, axes).astype(x.dtype)
  y = jnp.einsum(spec, x, kernel)
  if bias_shape is not None:
    y = y + _param(module, f"{name}_bias", bias_shape, bias_axes,
                   nn.initializers.zeros).astype(x.dtype)
  return y


class Block(nn.Module):
  """One pre-norm block: ``x + attention(norm(x))``, then ``x + MLP(norm(x))``."""

  config: DecoderConfig
  cache_size: int = 0
  causal: bool = False  # positions 0 .. T − 1, no cache: the plain causal mask

  @nn.compact
  def __call__(self, x, context):
    rope, positions = context
    x = x + self._attention(_norm(self, x, "attention_norm", self.config), rope, positions)
    x = x + self._mlp(_norm(self, x, "mlp_norm", self.config))
    return sharding.constrain_activations(x), None

  def _attention(self, h, rope, positions):
    """Causal grouped-query attention of ``h [B, T, width]`` at ``positions [B, T]``."""
    c = self.config
    llama = c.family == "llama"
    bias = c.qkv_bias or not llama
    q = _dense(self, h, "query", (c.width, c.heads, c.head_dim), ("embed", "heads", "kv"),
               "btw,whd->bthd", *(((c.heads, c.head_dim), ("heads", "kv")) if bias else ()))
    k, v = (_dense(self, h, name, (c.width, c.kv_heads, c.head_dim), ("embed", "heads", "kv"),
                   "btw,whd->bthd", *(((c.kv_heads, c.head_dim), ("heads", "kv")) if bias else ()))
            for name in ("key", "value"))
    if llama:
      q, k = _rotate(q, *rope), _rotate(k, *rope)
    keys = None
    if self.cache_size:  # generation: this call's keys and values join the cache
      k, v = (self._cached(name, a, positions) for name, a in (("key", k), ("value", v)))
      keys = jnp.broadcast_to(jnp.arange(self.cache_size), (h.shape[0], self.cache_size))
    q = q.reshape(*q.shape[:2], c.kv_heads, c.heads // c.kv_heads, c.head_dim)
    attended = attention.attend_grouped(q, k, v, None if self.causal else positions, keys,
                                        c.attention, c.attention_chunk)
    return _dense(self, attended, "out", (c.heads, c.head_dim, c.width), ("heads", "kv", "embed"),
                  "bthd,hdw->btw", *(() if llama else ((c.width,), ("embed",))))

  def _mlp(self, h):
    """SwiGLU (Llama), GeGLU (Gemma) or a ``gelu_new`` MLP with biases (GPT-2)."""
    c = self.config
    if c.family == "llama":
      gate = _dense(self, h, "gate", (c.width, c.mlp), ("embed", "mlp"), "btw,wm->btm")
      up = _dense(self, h, "up", (c.width, c.mlp), ("embed", "mlp"), "btw,wm->btm")
      act = jax.nn.silu if c.activation == "silu" else functools.partial(jax.nn.gelu,
                                                                         approximate=True)
      return _dense(self, act(gate) * up, "down", (c.mlp, c.width), ("mlp", "embed"),
                    "btm,mw->btw")
    h = _dense(self, h, "mlp_in", (c.width, c.mlp), ("embed", "mlp"), "btw,wm->btm",
               (c.mlp,), ("mlp",))
    return _dense(self, jax.nn.gelu(h, approximate=True), "mlp_out", (c.mlp, c.width),
                  ("mlp", "embed"), "btm,mw->btw", (c.width,), ("embed",))

  def _cached(self, name: str, new: jax.Array, positions: jax.Array) -> jax.Array:
    """The cache of ``name`` ``[B, cache_size, kv_heads, head_dim]`` with ``new`` written at
    ``positions`` (a slot is rewritten before any query can see it)."""
    cache = self.variable("cache", name, jnp.zeros, (new.shape[0], self.cache_size,
                                                     *new.shape[2:]), new.dtype)
    cache.value = jax.vmap(lambda c, n, p: c.at[p].set(n))(cache.value, new, positions)
    return cache.value


class Decoder(nn.Module):
  """Tokens ``[B, T]`` int32 to next-token logits ``[B, T, vocab]`` (float32).

  Attributes:
    config: a :class:`DecoderConfig`.
  """

  config: DecoderConfig

  @nn.compact
  def __call__(self, tokens, positions=None, cache_size: int = 0):
    """Logits of ``tokens`` at ``positions`` (``[B, T]``; default ``0 .. T − 1``). With
    ``cache_size`` > 0 (generation, the ``cache`` collection mutable) each layer keeps the
    keys and values of every position seen, and the tokens attend to those at or before
    their own position."""
    c = self.config
    t = tokens.shape[1]
    longest = cache_size or t
    if longest > c.max_positions or (c.sliding_window and longest > c.sliding_window):
      limit = min(c.max_positions, c.sliding_window or c.max_positions)
      raise ValueError(f"tokens of length {longest}; allowed: at most {limit} for this model")
    causal = positions is None and not cache_size
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t), tokens.shape)
    dtype = jnp.dtype(c.dtype)
    embed = _param(self, "embed", (c.vocab, c.width), ("vocab", "embed"))
    x = jnp.take(embed, tokens, axis=0)
    if c.embed_scale:  # Gemma: √width in the embedding's dtype
      x = x * jnp.asarray(c.width ** 0.5, x.dtype)
    x = x.astype(dtype)
    rope = None
    if c.family == "gpt2":
      table = _param(self, "positions", (c.max_positions, c.width), (None, "embed"))
      x = x + jnp.take(table, positions, axis=0).astype(dtype)
    else:
      angle = positions[..., None].astype(jnp.float32) * inverse_frequencies(c)
      angle = jnp.concatenate([angle, angle], -1)[:, :, None, :]
      rope = (jnp.cos(angle).astype(dtype), jnp.sin(angle).astype(dtype))
    x = sharding.constrain_activations(x)
    block = remat.block(Block) if c.remat == "block" else Block
    x, _ = nn.scan(block, variable_axes={"params": 0, "cache": 0}, split_rngs={"params": True},
                   in_axes=nn.broadcast, length=c.depth,
                   metadata_params={nn.PARTITION_NAME: "layers"})(
                       c, cache_size, causal, name="blocks")(x, (rope, positions))
    x = _norm(self, x, "final_norm", c).astype(jnp.float32)
    if c.tied:
      logits = x @ embed.astype(jnp.float32).T
    else:
      logits = x @ _param(self, "head", (c.width, c.vocab), ("embed", "vocab"))
    return sharding.constrain_activations(logits, "act_vocab")


def build(config: DecoderConfig) -> tuple[Decoder, Callable]:
  """``(module, init)``: the decoder and ``key -> boxed params`` (logical names kept)."""
  config.check()
  module = Decoder(config)
  tokens = jnp.zeros((1, 1), jnp.int32)
  return module, lambda key: module.init(key, tokens)["params"]


def greedy(config: DecoderConfig, params, prompts, prompt_lengths, max_new: int, eos: int,
           pad: int = 0) -> jax.Array:
  """Greedy decoding with a key-value cache: the prompts run once, then one token per step.

  Args:
    config: the decoder's shape.
    params: its parameters.
    prompts: ``[B, T]`` int tokens, each prompt left-aligned (what follows is ignored), ``T``
      ≥ its length + ``max_new``: the cache holds ``T`` positions.
    prompt_lengths: ``[B]`` each prompt's length (at least 1).
    max_new: the most tokens generated.
    eos: the end token; generation stops after it.
    pad: written after EOS.

  Returns:
    ``[B, max_new]`` the generated tokens (EOS included, ``pad`` after it), the tokens
    :func:`lur_jax.lm.evaluate.greedy` gives without a cache.
  """
  if not isinstance(prompt_lengths, jax.core.Tracer) and (
      int(np.max(prompt_lengths)) + max_new > np.shape(prompts)[1]):
    raise ValueError(f"prompts of up to {int(np.max(prompt_lengths))} tokens and max_new="
                     f"{max_new} in a buffer of {np.shape(prompts)[1]}; allowed: prompt + "
                     "max_new <= the buffer")
  return _greedy(config, params, jnp.asarray(prompts), jnp.asarray(prompt_lengths),
                 int(max_new), int(eos), int(pad))


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))  # once per shape, not per call
def _greedy(config, params, prompts, lengths, max_new, eos, pad):
  module = Decoder(config)
  size = prompts.shape[1]
  logits, cache = module.apply({"params": params}, prompts, cache_size=size, mutable=["cache"])
  first = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], 1)[:, 0].argmax(-1)

  def step(carry, i):
    cache, token, done = carry
    out = jnp.where(done, pad, token)
    done = done | (token == eos)
    logits, cache = module.apply({"params": params, **cache}, token[:, None],
                                 (lengths + i)[:, None], cache_size=size, mutable=["cache"])
    return (cache, logits[:, 0].argmax(-1).astype(token.dtype), done), out
  start = (cache, first.astype(prompts.dtype), jnp.zeros(prompts.shape[0], bool))
  _, tokens = jax.lax.scan(step, start, jnp.arange(max_new))
  return tokens.T
