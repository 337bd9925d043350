"""Flax models with a pure ``apply_fn(params, x) -> logits``.

Parameter paths are plain names (``hidden_0``, ``conv_1``, ``fc``) so that
methods can select layers by name.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """Flattens the input, then ReLU hidden layers and a linear ``fc`` head."""

  num_classes: int
  hidden: Sequence[int] = (128, 128)

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"hidden_{i}")(x))
    return nn.Dense(self.num_classes, name="fc")(x)


class CNN(nn.Module):
  """Two 3×3 conv blocks (ReLU, 2×2 average pool), a hidden dense layer, ``fc``."""

  num_classes: int
  channels: Sequence[int] = (32, 64)
  hidden: int = 128

  @nn.compact
  def __call__(self, x):
    if x.ndim == 3:  # [B, H, W] -> [B, H, W, 1]
      x = x[..., None]
    for i, c in enumerate(self.channels):
      x = nn.relu(nn.Conv(c, (3, 3), name=f"conv_{i}")(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden, name="hidden_0")(x))
    return nn.Dense(self.num_classes, name="fc")(x)


MODELS = {"mlp": MLP, "cnn": CNN}


class Model(NamedTuple):
  """A model as the rest of the library sees it: an init and a pure apply."""

  init: Callable[[jax.Array], dict]  # rng -> params
  apply: Callable[[dict, jax.Array], jax.Array]  # (params, x) -> logits


def build_model(name: str, num_classes: int, input_shape: Sequence[int], **kwargs) -> Model:
  """Builds a registered model.

  Args:
    name: a key of ``MODELS``.
    num_classes: output width.
    input_shape: shape of one example (no batch dimension).
    **kwargs: module fields (``hidden``, ``channels``).

  Returns:
    A :class:`Model`; ``init(rng)`` returns the params pytree.
  """
  if name not in MODELS:
    raise ValueError(f"model.name={name!r}; allowed: {', '.join(MODELS)}")
  try:
    module = MODELS[name](num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise ValueError(f"model {name!r}: {e}") from None
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  return Model(init=lambda rng: module.init(rng, dummy)["params"],
               apply=lambda params, x: module.apply({"params": params}, x))
