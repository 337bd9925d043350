"""A decoder-only transformer whose every parameter carries logical axis names.

Pre-LayerNorm blocks (causal multi-head attention with rotary positions, a GELU MLP), stacked
with ``nn.scan`` so that depth costs one compiled block, each block optionally rematerialised
(``remat="block"``). Parameters are float32; ``dtype`` is the compute dtype. The logical axes
(``vocab``, ``embed``, ``heads``, ``kv``, ``mlp``, ``layers``) are mapped to mesh axes by the
rules of :mod:`lur_jax.training.sharding`, so the same module runs replicated, FSDP or
tensor parallel.

A batch is ``{"x": tokens [B, T] int32}``; :func:`lm_objective` is the mean next-token
cross-entropy, ``(params, batch) -> scalar``, as every lur_jax objective.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from lur_jax.core import losses
from lur_jax.models import attention, remat
from lur_jax.training import sharding

REMAT = ("none", "block")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """The transformer's shape.

  Attributes:
    vocab: the vocabulary size.
    width: the model (embedding) width.
    depth: the number of blocks.
    heads: attention heads; ``width`` must divide by it.
    seq_len: the longest sequence (the rotary tables' length).
    mlp_ratio: the MLP's hidden width over ``width``.
    dtype: the compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
    remat: ``"none"``, or ``"block"`` to rematerialise each block in the backward pass (and
      in ``exact``'s second backward pass: :mod:`lur_jax.models.remat`).
    attention: ``"plain"``, ``"chunked"``, ``"xla"`` or ``"cudnn"``
      (:mod:`lur_jax.models.attention`; ``cudnn`` is first-order only).
    attention_chunk: keys per chunk of ``chunked`` attention.
    scan_unroll: blocks per iteration of the layer scan (``depth``: fully unrolled, which
      XLA's cost analysis needs to count every block's FLOPs).
  """

  vocab: int = 256
  width: int = 128
  depth: int = 2
  heads: int = 4
  seq_len: int = 64
  mlp_ratio: int = 4
  dtype: str = "float32"
  remat: str = "none"
  scan_unroll: int = 1
  attention: str = "plain"
  attention_chunk: int = 128

  def check(self) -> None:
    """Raises ValueError naming the first bad field."""
    for name in ("vocab", "width", "depth", "heads", "seq_len", "mlp_ratio", "scan_unroll",
                 "attention_chunk"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"model.{name}={value!r}; allowed: an int >= 1")
    if self.width % self.heads or (self.width // self.heads) % 2:
      raise ValueError(f"model.width={self.width} with model.heads={self.heads}; allowed: a "
                       "width that divides into heads of an even size")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"model.dtype={self.dtype!r}; allowed: float32, bfloat16")
    if self.remat not in REMAT:
      raise ValueError(f"model.remat={self.remat!r}; allowed: {', '.join(REMAT)}")
    if self.attention not in attention.IMPLEMENTATIONS:
      raise ValueError(f"model.attention={self.attention!r}; allowed: "
                       f"{', '.join(attention.IMPLEMENTATIONS)}")


def _init(axes: tuple[str, ...], scale: float = 0.02) -> Callable:
  return nn.with_logical_partitioning(nn.initializers.normal(scale), axes)


def _layer_norm(dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      dtype=dtype, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def _rotary(x: jax.Array) -> jax.Array:
  """Rotary position embedding of ``x [B, T, heads, head_dim]`` (half-split form)."""
  t, half = x.shape[1], x.shape[-1] // 2
  freq = 1.0 / (10_000 ** (jnp.arange(half, dtype=jnp.float32) / half))
  angle = jnp.arange(t, dtype=jnp.float32)[:, None] * freq[None, :]
  sin, cos = jnp.sin(angle)[None, :, None, :], jnp.cos(angle)[None, :, None, :]
  a, b = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], -1).astype(x.dtype)


class Block(nn.Module):
  """One pre-LayerNorm block: ``x + attention(LN(x))``, then ``x + MLP(LN(x))``."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x, _):
    c = self.config
    dtype, head_dim = jnp.dtype(c.dtype), c.width // c.heads
    h = _layer_norm(dtype, "ln_attention")(x)
    qkv = [nn.DenseGeneral((c.heads, head_dim), dtype=dtype, use_bias=False, name=name,
                           kernel_init=_init(("embed", "heads", "kv")))(h)
           for name in ("query", "key", "value")]
    q, k, v = _rotary(qkv[0]), _rotary(qkv[1]), qkv[2]
    attended = attention.attend(q, k, v, c.attention, c.attention_chunk)
    x = x + nn.DenseGeneral(c.width, axis=(-2, -1), dtype=dtype, use_bias=False, name="out",
                            kernel_init=_init(("heads", "kv", "embed")))(attended)
    h = _layer_norm(dtype, "ln_mlp")(x)
    h = nn.Dense(c.mlp_ratio * c.width, dtype=dtype, name="mlp_in",
                 kernel_init=_init(("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(h)
    h = nn.Dense(c.width, dtype=dtype, name="mlp_out", kernel_init=_init(("mlp", "embed")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(
                     nn.gelu(h))
    return sharding.constrain_activations(x + h), None


class Transformer(nn.Module):
  """Tokens ``[B, T]`` to next-token logits ``[B, T, vocab]`` (float32).

  Attributes:
    config: a :class:`TransformerConfig`.
  """

  config: TransformerConfig

  @nn.compact
  def __call__(self, tokens):
    c = self.config
    embed = nn.Embed(c.vocab, c.width, name="embed",
                     embedding_init=_init(("vocab", "embed")))
    x = sharding.constrain_activations(embed(tokens).astype(jnp.dtype(c.dtype)))
    block = remat.block(Block) if c.remat == "block" else Block
    x, _ = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                   unroll=c.scan_unroll,
                   length=c.depth, metadata_params={nn.PARTITION_NAME: "layers"})(
                       c, name="blocks")(x, None)
    x = _layer_norm(jnp.dtype(c.dtype), "ln_final")(x)
    logits = embed.attend(x.astype(jnp.float32))  # tied embeddings
    return sharding.constrain_activations(logits, "act_vocab")


def lm_objective(apply_fn: Callable) -> Callable:
  """The mean next-token cross-entropy.

  Args:
    apply_fn: ``(params, tokens [B, T]) -> logits [B, T, vocab]``.

  Returns:
    A pure ``loss(params, batch) -> scalar``, ``batch = {"x": tokens [B, T]}``: token t + 1
    is the label of position t.
  """
  def loss(params, batch):
    return losses.next_token_nll(apply_fn(params, batch["x"]), batch["x"]).mean()
  return loss


def parameter_count(config: TransformerConfig) -> int:
  """The number of parameters, counted from abstract shapes (nothing is allocated).

  Args:
    config: the transformer's shape.

  Returns:
    The total number of parameter entries.
  """
  shapes = jax.eval_shape(lambda: Transformer(config).init(
      jax.random.key(0), jnp.zeros((1, config.seq_len), jnp.int32)))
  return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))
