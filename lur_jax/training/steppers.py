"""How a training state lives on the devices and one step of it runs.

:func:`lur_jax.training.loop.run` drives either of two steppers through the same loop,
both a ``jax.jit`` with ``NamedSharding``\\ s (no per-device code):

- :class:`Sharded`: one model. Its parameters and optimiser state are
  replicated (data parallelism) or sharded over ``fsdp`` (and ``tensor``) by
  :mod:`lur_jax.training.sharding`; the batch goes over ``data`` × ``fsdp``. Every loss
  is a plain mean over the global batch and XLA inserts the collectives, so
  the step computes what one device computes on the same batch.
- :class:`Ensemble`: M models vmapped over a leading member axis, the members
  spread over the devices, in groups of ``chunk``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lur_jax.core import augment as augment_lib, streams
from lur_jax.training import parallel, sharding


def indexed(step_fn, augment: bool = False):
  """``(state, x, y, retain_order, forget_order, i)``: step ``i`` of an epoch,
  gathering its batches from the device-resident data, then ``step_fn``."""

  def train_step(state, x, y, r, f, i):
    ri, fi = r[i], f[i]
    xr, xf = x[ri], x[fi]
    if augment:  # keyed by the step and drawn for the global batch: mesh-independent
      key_r, key_f = jax.random.split(jax.random.fold_in(
          jax.random.fold_in(state.rng, state.step), streams.AUGMENT))
      xr, xf = augment_lib.random_crop_flip(key_r, xr), augment_lib.random_crop_flip(key_f, xf)
    return step_fn(state, {"x": xr, "y": y[ri]}, {"x": xf, "y": y[fi]})
  return train_step


def _gather(a):
  """One array -> numpy on this process, whatever its sharding."""
  if not isinstance(a, jax.Array):
    return a
  if parallel.is_key(a):
    return jax.random.wrap_key_data(_gather(jax.random.key_data(a)), impl=jax.random.key_impl(a))
  if a.is_fully_replicated:
    return np.asarray(a.addressable_data(0))
  if a.is_fully_addressable:
    return np.asarray(a)
  return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def host(tree):
  """A tree of (replicated or sharded) device arrays -> this process's numpy copy."""
  return jax.tree.map(_gather, tree)


def _all_finite(params, members: int) -> np.ndarray:
  """``[members]``: whether each member's parameters are all finite."""
  ok = np.ones(members, bool)
  for leaf in jax.tree.leaves(params):
    ok &= np.isfinite(np.asarray(leaf)).reshape(members, -1).all(1)
  return ok


class Stepper:
  """The interface :func:`lur_jax.training.loop.run` drives.

  Attributes:
    members: how many models one state holds (1 for one model).
    batch_axes: the mesh axes one model's batches split over.
  """

  members: int = 1
  batch_axes: str | tuple[str, ...] = ("data", "fsdp")

  def place(self, state) -> list:
    """The state on the devices, as a list of groups run one after another."""
    raise NotImplementedError

  def joined(self, states):
    """The groups as one state, for a checkpoint (and the shape to restore into)."""
    return states[0]

  def place_data(self, x, y) -> tuple:
    """The training set on the devices (replicated)."""
    return parallel.put((x, y), NamedSharding(self.mesh, P()))

  def place_batches(self, epochs: list) -> list:
    """One epoch's ``(retain, forget)`` index arrays per member -> per group."""
    (r, f), = epochs
    return [parallel.put((r, f), NamedSharding(self.mesh, P(None, self.batch_axes)))]

  def compile(self, state, data_arrays, batches):
    """The compiled ``(state, x, y, r, f, i) -> (state, metrics)``."""
    raise NotImplementedError

  def host(self, states):
    """The final state on the host (numpy)."""
    return host(self.joined(states))

  def finite(self, state) -> np.ndarray:
    """``[members]``: whether each member's parameters are all finite."""
    return _all_finite(state.params, 1)


def state_shardings(state, mesh: Mesh, param_shardings):
  """Shardings of a :class:`~lur_jax.TrainState`: the parameters' own, each
  optimiser-state leaf that of the parameter whose path it ends with (Adam's
  moments, momentum), everything else replicated.

  Args:
    state: the state (arrays or shapes).
    mesh: the mesh.
    param_shardings: a tree like ``state.params`` (:func:`lur_jax.training.sharding.param_shardings`).

  Returns:
    A tree of ``NamedSharding`` like ``state``.
  """
  replicated = NamedSharding(mesh, P())
  flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
  by_path = [(jax.tree_util.keystr(path), np.shape(leaf), s) for (path, leaf), s in
             zip(flat, jax.tree.leaves(param_shardings))]

  def opt_leaf(path, leaf):
    name = jax.tree_util.keystr(path)
    for suffix, shape, s in by_path:
      if name.endswith(suffix) and np.shape(leaf) == shape:
        return s
    return replicated
  opt = jax.tree_util.tree_map_with_path(opt_leaf, state.opt_state)
  return state._replace(params=param_shardings, opt_state=opt,
                        step=replicated, rng=replicated,
                        model_state=jax.tree.map(lambda _: replicated, state.model_state),
                        reference=None if state.reference is None else param_shardings)


def _replicated(tree, mesh: Mesh):
  return jax.tree.map(lambda _: NamedSharding(mesh, P()), tree)


def shardings_of(state, model, mesh: Mesh):
  """The shardings of one model's :class:`~lur_jax.TrainState` on ``mesh``:
  everything replicated when only ``data`` splits the mesh, else the
  parameters' own (:func:`lur_jax.training.sharding.model_shardings`) through
  :func:`state_shardings`."""
  if sharding.is_data_parallel(mesh):
    return _replicated(state, mesh)
  return state_shardings(state, mesh, sharding.model_shardings(model, mesh))


class Sharded(Stepper):
  """One model: the state replicated (data parallel) or sharded (FSDP, tensor
  parallel), the batch over ``data`` × ``fsdp``.

  ``step`` is a plain step: every loss is a mean over the global batch and XLA
  partitions it. It is traced under ``jax.set_mesh``, so
  :func:`lur_jax.training.sharding.constrain` shards activations.

  Args:
    step_fn: a pure ``(state, retain_batch, forget_batch) -> (state, metrics)``.
    mesh: from :func:`lur_jax.make_mesh`.
    shardings: from :func:`shardings_of` (``None``: the state replicated).
    augment: random crop and flip on both batches (see :func:`indexed`).
  """

  def __init__(self, step_fn, mesh: Mesh, shardings=None, augment: bool = False):
    self.step, self.mesh, self.shardings = indexed(step_fn, augment), mesh, shardings

  def place(self, state) -> list:
    if self.shardings is None:
      self.shardings = _replicated(state, self.mesh)
    return [parallel.put(state, self.shardings)]

  def compile(self, state, data_arrays, batches):
    with jax.set_mesh(self.mesh):
      return jax.jit(self.step, donate_argnums=0,
                     out_shardings=(self.shardings, NamedSharding(self.mesh, P()))).lower(
          state, *data_arrays, *batches, np.int32(0)).compile()


def check_mesh(mesh: Mesh, what: str = "an ensemble") -> None:
  """ValueError unless only the ``data`` axis splits ``mesh``: ensembles spread their
  members over the devices and replicate each member's parameters.

  Args:
    mesh: the study's mesh.
    what: names the caller in the message ("an audit", "a verdict").
  """
  if mesh.size != mesh.shape.get("data", 1):
    raise ValueError(f"mesh {dict(mesh.shape)} for {what}; allowed: mesh.fsdp=1 and "
                     "mesh.tensor=1 (its models are spread over the devices, each whole)")


def groups(models: int, chunk: int, devices: int) -> list[slice]:
  """The members one compiled call runs at once: all (``chunk`` 0) or ``chunk``."""
  if models % devices:
    raise ValueError(f"{models} models do not divide over {devices} devices; allowed: a "
                     f"multiple of {devices}")
  size = chunk or models
  if size % devices or models % size:
    raise ValueError(f"chunk={chunk} with {models} models on {devices} devices; allowed: 0 "
                     f"(all at once) or a divisor of {models} that is a multiple of {devices}")
  return [slice(s, s + size) for s in range(0, models, size)]


def member(tree, m):
  """Member ``m`` (an index or a slice) of a tree with a leading member axis."""
  return jax.tree.map(lambda a: a[m], tree)


class Ensemble(Stepper):
  """M models at once: ``step`` (one member's) vmapped over a leading member
  axis, the member axis sharded over every device of the mesh (no
  communication), ``chunk`` members per call.

  Args:
    step_fn: one member's pure ``(state, retain_batch, forget_batch) -> (state, metrics)``.
    mesh: a mesh whose only axis of size > 1 is ``data``.
    members: M.
    chunk: members per call (0: all).
    augment: as in :class:`Sharded`.
  """

  def __init__(self, step_fn, mesh: Mesh, members: int, chunk: int = 0, augment: bool = False):
    check_mesh(mesh)
    self.step, self.mesh, self.members = indexed(step_fn, augment), mesh, members
    self.groups = groups(members, chunk, mesh.size)
    self._by_member = NamedSharding(mesh, P("data"))

  def place(self, state) -> list:
    return [parallel.put(member(state, g), self._by_member) for g in self.groups]

  def joined(self, states):
    return jax.tree.map(lambda *parts: jnp.concatenate(parts) if parallel.is_key(parts[0])
                        else np.concatenate(parts), *jax.device_get(states))

  def host(self, states):
    return self.joined(states)

  def place_batches(self, epochs: list) -> list:
    r, f = (np.stack(sets) for sets in zip(*epochs))
    return [parallel.put((r[g], f[g]), self._by_member) for g in self.groups]

  def compile(self, state, data_arrays, batches):
    one = self.step
    if self.groups[0].stop - self.groups[0].start == 1:  # no vmap, no member axis

      def group_step(state, x, y, r, f, i):
        new, metrics = one(member(state, 0), x, y, r[0], f[0], i)
        return jax.tree.map(lambda a: a[None], (new, metrics))
    else:
      group_step = jax.vmap(one, in_axes=(0, None, None, 0, 0, None))
    return jax.jit(group_step, donate_argnums=0).lower(state, *data_arrays, *batches,
                                                       np.int32(0)).compile()

  def finite(self, state) -> np.ndarray:
    return _all_finite(state.params, self.members)
