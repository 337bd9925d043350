"""Flax models with a pure ``apply_fn(params, x) -> logits``.

Parameter paths are plain names (``hidden_0``, ``conv_1``, ``layer3``, ``fc``)
so that methods can select layers by name.

Batch normalisation: in training (``apply``) a :class:`BatchNorm` normalises
with the statistics of the batch itself, so a loss stays a pure function of
params and batch and differentiates through the lookahead like any other
layer. Running statistics live apart from params, in a *model state*
(``init_state``), are refreshed by the training step from
``batch_moments(params, x)``, and are used by ``eval_apply``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, traverse_util
from jax import lax


class MLP(nn.Module):
  """Flattens the input, then ReLU hidden layers and a linear ``fc`` head.

  Attributes:
    num_classes: the width of ``fc``, the logits.
    hidden: the widths of the hidden layers ``hidden_0``, ``hidden_1``, ...
  """

  num_classes: int
  hidden: Sequence[int] = (128, 128)

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"hidden_{i}")(x))
    return nn.Dense(self.num_classes, name="fc")(x)


class CNN(nn.Module):
  """3×3 conv blocks (ReLU, 2×2 average pool), a hidden dense layer, ``fc``.

  Attributes:
    num_classes: the width of ``fc``, the logits.
    channels: the channels of the conv blocks ``conv_0``, ``conv_1``, ...
    hidden: the width of the dense layer ``hidden_0``.
    norm: a :class:`BatchNorm` (``bn_i``) after each convolution.
  """

  num_classes: int
  channels: Sequence[int] = (32, 64)
  hidden: int = 128
  norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = True):
    if x.ndim == 3:  # [B, H, W] -> [B, H, W, 1]
      x = x[..., None]
    for i, c in enumerate(self.channels):
      x = nn.Conv(c, (3, 3), use_bias=not self.norm, name=f"conv_{i}")(x)
      if self.norm:
        x = BatchNorm(name=f"bn_{i}")(x, train)
      x = nn.relu(x)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden, name="hidden_0")(x))
    return nn.Dense(self.num_classes, name="fc")(x)


class BatchNorm(nn.Module):
  """Batch normalisation whose training pass needs no mutable state.

  Training normalises with the batch's own mean and variance and sows them
  into the ``batch_moments`` collection (a no-op unless it is mutable);
  evaluation uses the running ``batch_stats``. Under ``jit`` with the batch
  sharded over devices the moments are those of the global batch.

  Attributes:
    epsilon: added to the variance.
  """

  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool):
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    if train and not self.is_initializing():
      axes = tuple(range(x.ndim - 1))
      mean = x.mean(axes)
      var = jnp.square(x - mean).mean(axes)
      self.sow("batch_moments", "mean", mean)
      self.sow("batch_moments", "var", var)
    else:
      mean = self.variable("batch_stats", "mean", jnp.zeros, (features,)).value
      var = self.variable("batch_stats", "var", jnp.ones, (features,)).value
    return (x - mean) * lax.rsqrt(var + self.epsilon) * scale + bias


class BasicBlock(nn.Module):
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.Conv(self.features, (3, 3), self.stride, padding=1, use_bias=False, name="conv1")(x)
    y = nn.relu(BatchNorm(name="bn1")(y, train))
    y = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, name="conv2")(y)
    y = BatchNorm(name="bn2")(y, train)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), self.stride, use_bias=False, name="shortcut")(x)
      x = BatchNorm(name="shortcut_bn")(x, train)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18, CIFAR variant: 3×3 stem, no max-pool; groups ``layer1``-``layer4``, ``fc``.

  Attributes:
    num_classes: the width of ``fc``, the logits.
    width: the channels of ``layer1`` (doubling per group); a smaller width
      makes CPU smoke tests cheap.
  """

  num_classes: int
  width: int = 64

  @nn.compact
  def __call__(self, x, train: bool = True):
    if x.ndim == 3:
      x = x[..., None]
    x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, name="stem")(x)
    x = nn.relu(BatchNorm(name="stem_bn")(x, train))
    for i, (mult, stride) in enumerate([(1, 1), (2, 2), (4, 2), (8, 2)]):
      for j in range(2):
        x = BasicBlock(self.width * mult, stride if j == 0 else 1,
                       name=f"layer{i + 1}_{j}")(x, train)
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes, name="fc")(x)


#: The built-in Linen models by ``model.name``.
MODELS = {"mlp": MLP, "cnn": CNN, "resnet18": ResNet18}


class Model(NamedTuple):
  """A model as the rest of the library sees it: pure functions only.

  Attributes:
    init: ``rng -> params``.
    apply: ``(params, x [B, ...]) -> logits [B, C]`` in training mode.
    init_state: ``rng -> model state`` (BatchNorm running statistics; ``{}``
      without BatchNorm).
    eval_apply: ``(params, state, x) -> logits`` in evaluation mode.
    batch_moments: ``(params, x) -> {layer: (mean, var)}``, the training
      moments that refresh the running statistics.
    features: ``(params, state, x) -> [B, D]``, the input of the ``fc`` head
      in evaluation mode (``None`` where unknown).
    partitioned: ``rng -> params`` boxed with logical axis names
      (``nn.LogicallyPartitioned``), for sharding by :data:`lur_jax.training.sharding.RULES`;
      ``None``: the default FSDP rule.
    rules: the model's own ``(logical name, mesh axis or None)`` pairs, read before
      :data:`lur_jax.training.sharding.RULES` (``None``: those alone).
  """

  init: Callable[[jax.Array], dict]
  apply: Callable[[dict, jax.Array], jax.Array]
  init_state: Callable[[jax.Array], dict]
  eval_apply: Callable[[dict, dict, jax.Array], jax.Array]
  batch_moments: Callable[[dict, jax.Array], dict]
  features: Callable[[dict, dict, jax.Array], jax.Array] | None = None
  partitioned: Callable[[jax.Array], dict] | None = None
  rules: tuple | None = None


def stateless(apply: Callable, partitioned: Callable) -> Model:
  """A :class:`Model` without model state (a language model): ``apply(params, x)`` and
  ``partitioned(rng)``, its parameters boxed with logical axis names (``init`` unboxes them)."""
  return Model(init=lambda rng: nn.unbox(partitioned(rng)), apply=apply,
               init_state=lambda rng: {}, eval_apply=lambda params, state, x: apply(params, x),
               batch_moments=lambda params, x: {}, partitioned=partitioned)


def build_model(name: str, num_classes: int, input_shape: Sequence[int], **kwargs) -> Model:
  """Builds a registered model.

  Args:
    name: a key of ``MODELS``.
    num_classes: output width.
    input_shape: shape of one example (no batch dimension).
    **kwargs: module fields (``hidden``, ``channels``, ``norm``, ``width``).

  Returns:
    A :class:`Model`.
  """
  if name not in MODELS:
    raise ValueError(f"model.name={name!r}; allowed: {', '.join(MODELS)}")
  try:
    module = MODELS[name](num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise ValueError(f"model {name!r}: {e}") from None
  return wrap_linen(module, input_shape, name)


def _checked_input(name: str, input_shape: tuple):
  def checked(x):
    if tuple(x.shape[1:]) != input_shape:
      raise ValueError(f"inputs of shape {tuple(x.shape)} for a {name} built for examples of "
                       f"shape {input_shape}; allowed: [batch, {', '.join(map(str, input_shape))}]")
    return x
  return checked


def wrap_linen(module: nn.Module, input_shape: Sequence[int], name: str = "model",
               rules: tuple | None = None, input_dtype=jnp.float32) -> Model:
  """A Flax Linen module as a :class:`Model`.

  ``__call__(x, train)`` gets ``train`` when it takes it; a ``batch_stats``
  collection is the model state, refreshed from the ``batch_moments`` that
  :class:`BatchNorm` sows in training. Parameters with logical axis names
  (``nn.with_logical_partitioning``) keep them (:attr:`Model.partitioned`) and shard by
  them; ``init`` returns them unboxed.

  Args:
    module: a Linen module mapping ``[B, *input_shape]`` to ``[B, C]`` logits.
    input_shape: the shape of one example.
    name: named in the errors raised for inputs of the wrong shape.
    rules: the module's own ``(logical name, mesh axis)`` pairs (:attr:`Model.rules`).
    input_dtype: the inputs' dtype at init; an integer dtype (``jnp.int32``: a language
      model's tokens ``[B, T]``, ``input_shape`` ``(T,)`` the longest) skips the shape check.

  Returns:
    A :class:`Model`.
  """
  input_shape = tuple(input_shape)
  tokens = jnp.issubdtype(input_dtype, jnp.integer)  # a sequence may be shorter: unchecked
  checked = (lambda x: x) if tokens else _checked_input(name, input_shape)
  dummy = jnp.zeros((1, *input_shape), input_dtype)
  takes_train = "train" in inspect.signature(type(module).__call__).parameters
  train_kw, eval_kw = ({"train": True}, {"train": False}) if takes_train else ({}, {})

  def init_variables(rng):
    return module.init(rng, dummy, **eval_kw)

  def batch_moments(params, x):
    _, out = module.apply({"params": params}, checked(x), **train_kw, mutable=["batch_moments"])
    return jax.tree.map(lambda v: v[0], out.get("batch_moments", {}),
                        is_leaf=lambda v: isinstance(v, tuple))

  def eval_apply(params, state, x):
    return module.apply({"params": params, **({"batch_stats": state} if state else {})},
                        checked(x), **eval_kw)

  def features(params, state, x):
    captured = []
    def interceptor(next_fun, args, kwargs, context):
      if context.module.name == "fc" and context.method_name == "__call__":
        captured.append(args[0])
      return next_fun(*args, **kwargs)
    with nn.intercept_methods(interceptor):
      eval_apply(params, state, x)
    return captured[0]

  try:
    named = _has_names(jax.eval_shape(init_variables, jax.random.key(0))["params"])
  except Exception:  # pylint: disable=broad-except  # a module that cannot take the dummy:
    named = False    # the caller's check (plugins.check_model) says so in one line
  return Model(
      init=lambda rng: nn.unbox(init_variables(rng)["params"]),
      apply=lambda params, x: module.apply({"params": params}, checked(x), **train_kw),
      init_state=lambda rng: dict(init_variables(rng).get("batch_stats", {})),
      eval_apply=eval_apply, batch_moments=batch_moments, features=features,
      partitioned=(lambda rng: init_variables(rng)["params"]) if named else None, rules=rules)


def _has_names(tree) -> bool:
  return any(isinstance(leaf, nn.LogicallyPartitioned) for leaf in jax.tree.leaves(
      tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)))


def wrap_nnx(make: Callable[[jax.Array], nnx.Module], name: str = "model",
             rules: tuple | None = None) -> Model:
  """A Flax NNX module as a :class:`Model`; ``make(key)`` builds it from an init key.

  Its ``nnx.Param`` variables become a plain nested dict of arrays (the
  params); other state (RNG counters, say) is kept constant. Running
  statistics (``nnx.BatchStat``) are refused: their in-place update in
  training does not fit a pure loss; use :class:`BatchNorm` in a Linen module.
  Variables with logical axis names (``nnx.with_partitioning``) keep them
  (:attr:`Model.partitioned`, built with eager sharding off: lur_jax places them).

  Args:
    make: ``key -> nnx.Module``, the module built from an init key.
    name: named in the errors.
    rules: the module's own ``(logical name, mesh axis)`` pairs (:attr:`Model.rules`).

  Returns:
    A :class:`Model` whose params are nested dicts of arrays.

  Raises:
    ValueError: for a module with ``nnx.BatchStat`` variables.
  """
  make = _names_only(make)
  graphdef, template, rest = nnx.split(make(jax.random.key(0)), nnx.Param, ...)
  if jax.tree.leaves(nnx.state(nnx.merge(graphdef, template, rest), nnx.BatchStat)):
    raise ValueError(f"model.name={name!r} holds nnx.BatchStat running statistics; allowed: "
                     "NNX modules without BatchNorm (or a Linen module with lur_jax.BatchNorm)")

  def init(rng):
    return nnx.to_pure_dict(nnx.split(make(rng), nnx.Param, ...)[1])

  def apply(params, x):
    state = jax.tree.map(lambda a: a, template)  # a fresh State to fill
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state, rest)(x)

  def partitioned(rng):  # the pure dict, each named parameter boxed with its names
    params = nnx.split(make(rng), nnx.Param, ...)[1]
    names = {tuple(path): _nnx_names(v) for path, v in nnx.to_flat_state(params)}
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(params))
    return traverse_util.unflatten_dict({
        path: nn.LogicallyPartitioned(value, names[path]) if names.get(path) else value
        for path, value in flat.items()})

  named = any(_nnx_names(v) for _, v in nnx.to_flat_state(template))
  return Model(init=init, apply=apply, init_state=lambda rng: {},
               eval_apply=lambda params, state, x: apply(params, x),
               batch_moments=lambda params, x: {},
               partitioned=partitioned if named else None, rules=rules)


def _nnx_names(variable) -> tuple | None:
  """An NNX variable's logical axis names (``out_sharding``; ``sharding_names`` or
  ``sharding`` in older Flax), or ``None``."""
  meta = variable.get_metadata() if hasattr(variable, "get_metadata") else {}
  for key in ("out_sharding", "sharding_names", "sharding"):
    if meta.get(key):
      return tuple(meta[key])
  return None


def _names_only(make):
  """``make`` with Flax's eager sharding off (where it has one): named variables are built
  unplaced, with their names as metadata, for lur_jax to shard."""
  eager = getattr(nnx, "use_eager_sharding", None)
  if eager is None:
    return make
  def built(key):
    with eager(False):
      return make(key)
  return built


def update_running_stats(state: dict, moments: dict, momentum: float = 0.9) -> dict:
  """An exponential moving average of batch moments into running statistics.

  Args:
    state: the running statistics, the structure of ``moments``.
    moments: the batch's moments, the structure of :attr:`Model.batch_moments`.
    momentum: the weight of the old statistics.

  Returns:
    The new running statistics, the same tree structure.
  """
  return jax.tree.map(lambda old, new: momentum * old + (1.0 - momentum) * new, state, moments)
