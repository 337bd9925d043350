"""Models of a user's own, with logical axis names, for the sharded-study tests
(``model.name=tests.own_sharded_models:<factory>``)."""

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

import lur_jax

# Our own names: the pixels over fsdp, the hidden units over tensor, the classes whole.
RULES = (("pixels", "fsdp"), ("hidden", "tensor"), ("classes", None))


def _named(init, names):
  return nn.with_logical_partitioning(init, names)


class NamedMLP(nn.Module):
  """Flatten, Dense(128), ReLU, Dense(classes), every parameter named by ``names``."""

  num_classes: int
  names: tuple = ("pixels", "hidden", "classes")

  @nn.compact
  def __call__(self, x):
    a, b, c = self.names
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(128, kernel_init=_named(nn.initializers.lecun_normal(), (a, b)),
                 bias_init=_named(nn.initializers.zeros, (b,)))(x)
    x = nn.relu(x)
    return nn.Dense(self.num_classes, kernel_init=_named(nn.initializers.lecun_normal(), (b, c)),
                    bias_init=_named(nn.initializers.zeros, (c,)))(x)


def linen_library_names(num_classes, input_shape):
  """Names of lur_jax's own rules (``embed`` over fsdp, ``mlp`` over tensor)."""
  del input_shape
  return NamedMLP(num_classes, ("embed", "mlp", None))


def linen_own(num_classes, input_shape):
  """Own names, with the rules that map them."""
  return lur_jax.wrap_linen(NamedMLP(num_classes), input_shape, "linen_own", rules=RULES)


def linen_unmapped(num_classes, input_shape):
  """Own names and no rules for them: refused at start."""
  del input_shape
  return NamedMLP(num_classes)


class NnxMLP(nnx.Module):
  """The same network in NNX, named with ``nnx.with_partitioning``."""

  def __init__(self, num_classes, features, *, rngs):
    named = nnx.with_partitioning
    self.hidden = nnx.Linear(features, 128, rngs=rngs,
                             kernel_init=named(nnx.initializers.lecun_normal(),
                                               ("pixels", "hidden")),
                             bias_init=named(nnx.initializers.zeros, ("hidden",)))
    self.out = nnx.Linear(128, num_classes, rngs=rngs,
                          kernel_init=named(nnx.initializers.lecun_normal(),
                                            ("hidden", "classes")),
                          bias_init=named(nnx.initializers.zeros, ("classes",)))

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))))


def nnx_own(num_classes, input_shape):
  features = int(jnp.prod(jnp.asarray(input_shape)))
  return lur_jax.wrap_nnx(lambda key: NnxMLP(num_classes, features, rngs=nnx.Rngs(key)),
                          "nnx_own", rules=RULES)


class TinyLM(nn.Module):
  """Tokens [B, T] -> logits [B, T, vocab]: embedding, a causal mean of the past, an MLP, tied
  logits; named with lur_jax's rules (``vocab``, ``embed``, ``mlp``) and one of its own."""

  vocab: int
  width: int = 32

  @nn.compact
  def __call__(self, tokens):
    embed = nn.Embed(self.vocab, self.width,
                     embedding_init=_named(nn.initializers.normal(0.02), ("vocab", "embed")))
    x = embed(tokens)
    steps = jnp.arange(1, x.shape[1] + 1, dtype=x.dtype)[None, :, None]
    x = jnp.cumsum(x, axis=1) / steps  # each position sees its past
    h = nn.Dense(4 * self.width, kernel_init=_named(nn.initializers.lecun_normal(),
                                                    ("embed", "hidden")),
                 bias_init=_named(nn.initializers.zeros, ("hidden",)))(x)
    x = x + nn.Dense(self.width, kernel_init=_named(nn.initializers.lecun_normal(),
                                                    ("hidden", "embed")),
                     bias_init=_named(nn.initializers.zeros, ("embed",)))(nn.gelu(h))
    return embed.attend(x)


def linen_lm(vocab, seq_len, **unused):
  """An own language model for configs/lm_smoke.py (its other model keys are ignored)."""
  del unused
  return lur_jax.wrap_linen(TinyLM(vocab), (seq_len,), "linen_lm", rules=(("hidden", "tensor"),),
                            input_dtype=jnp.int32)


def classifier_as_lm(vocab, seq_len):
  """Not a language model: [B, T] -> [B, 10]."""
  del vocab
  return lur_jax.wrap_linen(NamedMLP(10, ("embed", "mlp", None)), (seq_len,), "classifier",
                            input_dtype=jnp.int32)
