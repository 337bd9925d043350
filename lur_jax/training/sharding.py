"""Parameters sharded over a mesh with the axes ``data``, ``fsdp`` and ``tensor``.

Parameters carry logical axis names (``vocab``, ``embed``, ``heads``, ``kv``, ``mlp``,
``layers``); one table of rules, :data:`RULES`, maps them to mesh axes, as MaxText's
``logical_axis_rules`` do. A parameter without names (a user's model) gets the default FSDP
rule of big_vision (``big_vision/sharding.py``): its largest dimension that divides evenly over ``fsdp`` is sharded, and
parameters smaller than ``min_size`` entries are replicated. Batches shard their leading
axis over ``data`` × ``fsdp``. The step itself never names a mesh axis: the shardings are
given at the ``jax.jit`` call site.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lur_jax.training import parallel

AXES = ("data", "fsdp", "tensor")

#: Logical axis -> mesh axis (``None``: replicated). The first rule naming an axis wins.
#: Parameters: ``vocab`` ... ``layers``; activations: ``act_*`` (the batch over data × fsdp).
RULES = (("batch", ("data", "fsdp")), ("vocab", "tensor"), ("embed", "fsdp"),
         ("heads", "tensor"), ("mlp", "tensor"), ("kv", None), ("layers", None),
         ("act_batch", ("data", "fsdp")), ("act_embed", None), ("act_vocab", "tensor"))


def mesh_shape(data: int = 1, fsdp: int = -1, tensor: int = 1,
               devices: int | None = None) -> dict[str, int]:
  """The sizes of the three axes; one of them may be −1 for "the rest of the devices".

  Args:
    data, fsdp, tensor: the axis sizes (``mesh.data`` ... in a config).
    devices: the device count (default: every device JAX sees).

  Returns:
    ``{"data": ..., "fsdp": ..., "tensor": ...}`` whose product is ``devices``.

  Raises:
    ValueError: for two axes at −1, a size below −1 or 0, or a product that is not the
      device count.
  """
  devices = jax.device_count() if devices is None else devices
  sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
  for name, size in sizes.items():
    if isinstance(size, bool) or not isinstance(size, int) or size == 0 or size < -1:
      raise ValueError(f"mesh.{name}={size!r}; allowed: an int >= 1, or -1 for the rest")
  rest = [name for name, size in sizes.items() if size == -1]
  if len(rest) > 1:
    raise ValueError(f"mesh: {' and '.join(f'mesh.{n}' for n in rest)} are both -1; allowed: "
                     "at most one axis at -1")
  known = math.prod(size for size in sizes.values() if size != -1)
  if rest:
    if devices % known:
      raise ValueError(f"mesh: {devices} devices do not divide over {known}; allowed: axis "
                       f"sizes whose product divides {devices}")
    sizes[rest[0]] = devices // known
  if math.prod(sizes.values()) != devices:
    raise ValueError(f"mesh: data × fsdp × tensor = {math.prod(sizes.values())}; allowed: the "
                     f"device count, {devices}")
  return sizes


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: int | None = None) -> Mesh:
  """A device mesh with the axes ``("data", "fsdp", "tensor")``, the one mesh of
  every run (by default every device on ``data``: data parallelism).

  Args:
    data, fsdp, tensor: as in :func:`mesh_shape`.
    devices: use the first this many devices (``None`` or 0: every device JAX sees).

  Returns:
    A ``jax.sharding.Mesh``.

  Raises:
    ValueError: for a device count or axis sizes that do not fit the devices.
  """
  devices = parallel.check_devices(devices or 0)
  sizes = mesh_shape(data, fsdp, tensor, devices)
  chosen = np.asarray(jax.devices()[:devices])
  return Mesh(chosen.reshape([sizes[a] for a in AXES]), AXES)


def fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int = 2 ** 14) -> P:
  """The default rule for a parameter without logical names (big_vision's FSDP).

  Args:
    shape: the parameter's shape.
    fsdp: the size of the ``fsdp`` axis.
    min_size: parameters with fewer entries stay replicated.

  Returns:
    A ``PartitionSpec`` sharding the largest dimension that divides by ``fsdp`` over
    ``fsdp`` (ties: the last such dimension), or replicated.
  """
  if math.prod(shape) < min_size or fsdp == 1:
    return P()
  candidates = [i for i, d in enumerate(shape) if d % fsdp == 0]
  if not candidates:
    return P()
  best = max(candidates, key=lambda i: (shape[i], i))
  return P(*(("fsdp" if i == best else None) for i in range(len(shape))))


def param_shardings(abstract_params, mesh: Mesh, rules=RULES, min_size: int = 2 ** 14):
  """Shardings for a parameter tree: by its logical names, else by :func:`fsdp_spec`.

  Args:
    abstract_params: ``jax.eval_shape`` of an init, boxed
      (``nn.LogicallyPartitioned`` leaves carry names) or plain.
    mesh: from :func:`make_mesh`.
    rules: logical axis -> mesh axis (:data:`RULES`).
    min_size: as in :func:`fsdp_spec`, for unnamed parameters.

  Returns:
    A tree of ``NamedSharding`` like the unboxed parameters.

  Raises:
    ValueError: when a named dimension does not divide over its mesh axes, or a logical
      name is one no rule maps (never replicated silently).
  """
  check_names(abstract_params, rules)

  def one(leaf):
    if _boxed(leaf):
      spec = nn.logical_to_mesh_axes(leaf.names, rules)
      shape = leaf.value.shape
    else:
      shape = leaf.shape
      spec = fsdp_spec(shape, mesh.shape["fsdp"], min_size)
    for size, axes in zip(shape, spec):
      ways = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ()))
      if size % ways:
        raise ValueError(f"a parameter of shape {shape} sharded as {spec}: dimension {size} "
                         f"does not divide over {ways} devices; allowed: sizes that divide")
    return NamedSharding(mesh, spec)
  return jax.tree.map(one, abstract_params,
                      is_leaf=_boxed)


def _boxed(x) -> bool:
  return isinstance(x, nn.LogicallyPartitioned)


def check_names(abstract_params, rules=RULES) -> None:
  """Raises ValueError naming the first logical axis name of ``abstract_params`` (boxed)
  that no rule maps, with the path of a parameter that carries it and the names mapped."""
  known = {name for name, _ in rules}
  flat = jax.tree_util.tree_flatten_with_path(
      abstract_params, is_leaf=_boxed)[0]
  for path, leaf in flat:
    for name in getattr(leaf, "names", ()) or ():
      if name is not None and name not in known:
        raise ValueError(
            f"parameter {jax.tree_util.keystr(path)} names the logical axis {name!r}, which no "
            f"sharding rule maps; allowed: {', '.join(sorted(known))}, or rules of the "
            "model's own (lur_jax.Model(rules=...), wrap_linen/wrap_nnx(..., rules=...), "
            "e.g. ((" + repr(name) + ", 'fsdp'),))")


def rules_of(model) -> tuple:
  """The rules a :class:`~lur_jax.Model` shards by: its own, then :data:`RULES`."""
  return (*(getattr(model, "rules", None) or ()), *RULES)


def model_shardings(model, mesh: Mesh, min_size: int = 2 ** 14):
  """:func:`param_shardings` of a :class:`~lur_jax.Model`'s parameters: by their logical
  names (the model's own rules first, then :data:`RULES`) when the model has a
  ``partitioned`` init, else by the default FSDP rule.

  Args:
    model: a :class:`~lur_jax.Model`.
    mesh: from :func:`make_mesh`.
    min_size: as in :func:`fsdp_spec`.

  Returns:
    A tree of ``NamedSharding`` like the model's (unboxed) parameters.
  """
  init = getattr(model, "partitioned", None) or model.init
  return param_shardings(jax.eval_shape(init, jax.random.key(0)), mesh, rules_of(model),
                         min_size=min_size)


def constrain(x: jax.Array, names: tuple[str | None, ...], rules=RULES) -> jax.Array:
  """``x`` constrained to the mesh axes its logical ``names`` map to.

  Args:
    x: an activation inside a jitted function.
    names: one logical name (or ``None``) per dimension.
    rules: as in :func:`param_shardings`.

  Returns:
    ``x``, with a sharding constraint when the call runs under ``jax.set_mesh`` of a mesh
    with the axes of :data:`AXES`; unchanged otherwise (no mesh, another mesh, or manual
    axes: lur_jax itself runs no per-device code, but a model of ours stays usable inside
    a user's own ``shard_map``, where a sharding constraint is not allowed).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or set(mesh.axis_names) != set(AXES) or any(
      t == jax.sharding.AxisType.Manual for t in mesh.axis_types):
    return x
  return jax.lax.with_sharding_constraint(x, P(*nn.logical_to_mesh_axes(names, rules)))


def constrain_activations(x: jax.Array, last: str = "act_embed") -> jax.Array:
  """A language model's activations ``[B, T, ·]`` keep their batch axis sharded (the rules'
  ``act_batch``; ``last``: the name of the last axis, ``act_vocab`` for logits); without it the
  partitioner may gather the whole batch onto every device."""
  return constrain(x, ("act_batch", None, last))


def is_data_parallel(mesh: Mesh) -> bool:
  """Whether only the ``data`` axis splits the mesh (parameters stay replicated)."""
  return all(size == 1 for name, size in mesh.shape.items() if name != "data")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis over ``data`` × ``fsdp``, the rest replicated."""
  return NamedSharding(mesh, P(("data", "fsdp")))


def uses_tensor_axis(shardings) -> bool:
  """Whether any parameter is split over ``tensor`` (a model with tensor-parallel names)."""
  def names(entry):
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
  return any("tensor" in names(entry) for s in jax.tree.leaves(shardings) for entry in s.spec)


def memory_bytes(compiled) -> dict[str, int]:
  """Per-device memory of a compiled program, as MaxText prints it.

  Args:
    compiled: ``jax.jit(f, ...).lower(...).compile()``.

  Returns:
    ``{"argument", "output", "temp", "alias", "total"}`` in bytes, total = argument +
    output + temp − alias.
  """
  m = compiled.memory_analysis()
  out = {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes,
         "temp": m.temp_size_in_bytes, "alias": m.alias_size_in_bytes}
  out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
  return out


def abstract_sharded(init: Callable, shardings):
  """``ShapeDtypeStruct``\\ s of ``init()``'s unboxed output, each with its sharding.

  Args:
    init: a function of no arguments returning the (boxed) parameters.
    shardings: from :func:`param_shardings`.

  Returns:
    The abstract parameters, ready for ``jit(...).lower``: nothing is allocated.
  """
  shapes = nn.unbox(jax.eval_shape(init))
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      shapes, shardings)
