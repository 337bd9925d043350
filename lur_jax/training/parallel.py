"""Processes and placement: multi-process start-up, who writes, barriers,
and trees of host arrays placed onto (or copied back from) a mesh.

The mesh itself and the shardings live in :mod:`lur_jax.training.sharding`.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils


def check_devices(devices: int) -> int:
  """``devices`` (0 = all) -> the number of devices on the data axis."""
  available = jax.device_count()
  if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or not (
      0 <= devices <= available):
    raise ValueError(f"devices={devices!r}; allowed: 0 (all) or 1..{available}, "
                     f"the number of devices JAX sees")
  return int(devices) or available


def check_divisible(name: str, batch_size: int, devices: int, over: str = "devices") -> None:
  """ValueError unless ``batch_size`` splits evenly over ``devices`` (named ``over``)."""
  if batch_size % devices:
    raise ValueError(f"{name}={batch_size} does not divide by {over}={devices}; allowed: "
                     f"a multiple of {devices}")


def is_key(a) -> bool:
  """Whether ``a`` is a typed PRNG key array (stored and moved as its key data)."""
  return isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def put(tree, sharding):
  """Places a tree of arrays (the same values on every process) onto ``sharding``.

  Works across processes: each process fills only its own devices' parts.

  Args:
    tree: numpy or JAX arrays (a device array is copied device to device, not through
      the host, and never aliased).
    sharding: one ``Sharding`` for every leaf, or a tree of them like ``tree``.

  Returns:
    The tree of global ``jax.Array``\\ s.
  """
  def one(a, s):
    if is_key(a):
      return jax.random.wrap_key_data(one(jax.random.key_data(a), s),
                                      impl=jax.random.key_impl(a))
    if isinstance(a, jax.Array):  # a copy: the caller's array survives a donating step
      return jax.device_put(a, s, may_alias=False)
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, s, lambda index: a[index])
  if isinstance(sharding, jax.sharding.Sharding):
    return jax.tree.map(lambda a: one(a, sharding), tree)
  return jax.tree.map(one, tree, sharding)


def distributed_init(coordinator: str = "", num_processes: int = 0, process_id: int = -1,
                     auto: bool = False) -> bool:
  """Starts multi-process JAX when configured; returns whether it runs.

  Empty arguments fall back to ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Without a coordinator
  nothing starts unless ``auto``, which lets JAX detect the cluster itself
  (TPU pod slices, SLURM, Open MPI). Call before anything else touches JAX's
  devices.

  Args:
    coordinator: ``host:port`` of process 0.
    num_processes: the number of processes.
    process_id: this process's index, ``0 .. num_processes − 1`` (−1: unset).
    auto: let JAX detect the cluster.

  Returns:
    Whether multi-process JAX runs (``False``: nothing was configured).

  Raises:
    ValueError: for an inconsistent process count or index.
  """
  if jax.distributed.is_initialized():
    return True
  coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("JAX_PROCESS_ID", "-1"))
  if not (coordinator or auto):
    return False
  if coordinator and not (num_processes >= 1 and 0 <= process_id < num_processes):
    raise ValueError(f"distributed: num_processes={num_processes}, process_id={process_id}; "
                     "allowed: num_processes >= 1 and 0 <= process_id < num_processes")
  jax.distributed.initialize(coordinator or None, num_processes or None,
                             process_id if process_id >= 0 else None)
  return True


def is_writer() -> bool:
  """Whether this process writes results (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits for every process (a no-op with one)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
