"""The training loop: the data order and its replay, one compiled step, compile
timing, checkpoints and the divergence scan.

:func:`fit` runs any pure step ``(state, retain_batch, forget_batch) -> (state,
metrics)`` (see :mod:`lur_jax.train`) over a device mesh; everything above it
(which method, which model, where results go) lives in :mod:`lur_jax.runner`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import zlib
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from lur_jax import augment as augment_lib, checkpoint, data, parallel


class FitResult(NamedTuple):
  """What :func:`fit` returns.

  Attributes:
    state: the final :class:`~lur_jax.TrainState` (host copy); ``None`` when
      restored from a cache.
    seconds: the wall clock of the steps, compilation and checkpoint writes
      excluded.
    compile_seconds: the time spent compiling.
    steps: the number of steps run.
    history: metric name -> per-step list.
    diverged_at: the first step whose loss or gradient norm was not finite,
      or ``None``.
  """

  state: object
  seconds: float
  compile_seconds: float
  steps: int
  history: dict
  diverged_at: int | None


def derive_seed(seed: int, name: str) -> int:
  """A seed of its own for ``name`` (a method, a model, a data order) under ``seed``."""
  return zlib.crc32(f"{seed}/{name}".encode())


def steps_per_epoch(iterate: str, retain_idx, forget_idx, batch_size: int,
                    forget_batch_size: int) -> int:
  """Batches in one walk through the ``iterate`` set ("retain" or "forget")."""
  walked, walked_bs = ((retain_idx, batch_size) if iterate == "retain"
                       else (forget_idx, forget_batch_size))
  return max(1, math.ceil(len(walked) / walked_bs))


class DataOrder:
  """The batches of every epoch, drawn from one seed: replaying the first
  epochs brings a resumed run to the same place as an uninterrupted one."""

  def __init__(self, seed: int, retain_idx, forget_idx, batch_size: int,
               forget_batch_size: int, steps: int):
    self._rng = np.random.default_rng(seed)
    self._sets = ((np.asarray(retain_idx), batch_size), (np.asarray(forget_idx),
                                                          forget_batch_size))
    self._steps = steps

  def next_epoch(self) -> tuple[np.ndarray, np.ndarray]:
    """``(retain, forget)`` example indices, each ``[steps, batch]`` int32."""
    return tuple(idx[data.batch_indices(self._rng, len(idx), bs, self._steps)].astype(np.int32)
                 for idx, bs in self._sets)

  def skip(self, epochs: int) -> None:
    for _ in range(epochs):
      self.next_epoch()


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


_active_timers: list[list[float]] = []  # the accumulators of the open compile_timer()s


def _on_duration(event, duration, **_):
  if event in _COMPILE_EVENTS:
    for total in _active_timers:
      total[0] += duration


@contextlib.contextmanager
def compile_timer():
  """Yields a one-element list that accumulates JAX's own compile durations.

  One listener, registered at the first use, serves every timer (older JAX
  releases cannot unregister a listener).
  """
  if not _active_timers and not getattr(_on_duration, "registered", False):
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    _on_duration.registered = True
  total = [0.0]
  _active_timers.append(total)
  try:
    yield total
  finally:
    _active_timers.remove(total)


def indexed(step_fn, augment: bool = False):
  """``(state, x, y, retain_order, forget_order, i)``: step ``i`` of an epoch,
  gathering its batches from the device-resident data, then ``step_fn``."""

  def train_step(state, x, y, r, f, i):
    ri, fi = r[i], f[i]
    xr, xf = x[ri], x[fi]
    if augment:  # keyed by the step and drawn for the global batch: mesh-independent
      key_r, key_f = jax.random.split(jax.random.fold_in(
          jax.random.fold_in(state.rng, state.step), 0x5EED))
      xr, xf = augment_lib.random_crop_flip(key_r, xr), augment_lib.random_crop_flip(key_f, xf)
    return step_fn(state, {"x": xr, "y": y[ri]}, {"x": xf, "y": y[fi]})
  return train_step


def _first_bad(metrics: list[dict]) -> int | None:
  """The index of the first step whose metrics hold NaN or Inf."""
  for k, m in enumerate(metrics):
    if not all(np.isfinite(v) for v in m.values()):
      return k
  return None


def _resume(checkpoints, state, desc, total, log):
  """``(state, position, history, seconds)`` from the newest readable checkpoint."""
  restored = checkpoints.restore(state) if checkpoints is not None else None
  if restored is None:
    return state, 0, {}, 0.0
  state, meta = restored
  if log is not None:
    log(f"{desc}: resuming at step {meta['position']} of {total}")
  return state, meta["position"], meta["history"], meta["seconds"]


class _Progress(NamedTuple):
  position: int  # steps done
  history: dict
  seconds: float  # run time so far, compilation and checkpoint writes excluded


def _run_steps(compiled, state, arrays, order, put, progress: _Progress, *, steps, total,
               checkpoints, every, bar):
  """Steps ``progress.position`` … ``total``; metrics reach the host at each save
  and epoch end, where the first non-finite one stops the run.

  Returns:
    ``(state, history, seconds, diverged_at)``.
  """
  x, y, r, f = arrays
  history, seconds, pending = progress.history, progress.seconds, []
  start = time.perf_counter()
  for t in range(progress.position, total):
    i = t % steps
    if i == 0 and t > progress.position:
      r, f = put(order.next_epoch())
    state, step_metrics = compiled(state, x, y, r, f, np.int32(i))
    pending.append(step_metrics)
    bar.update()
    done = t + 1
    save = checkpoints is not None and every and done % every == 0 and done < total
    if not (save or done % steps == 0 or done == total):
      continue
    host, pending = parallel.to_host(pending), []
    bad = _first_bad(host)
    for m in host[:bad]:
      for key, value in m.items():
        history.setdefault(key, []).append(float(value))
    if bad is not None:
      return state, history, seconds + time.perf_counter() - start, done - len(host) + bad
    if save:
      seconds += time.perf_counter() - start
      checkpoints.save(done, parallel.to_host(state),
                       {"position": done, "history": history, "seconds": seconds})
      start = time.perf_counter()
    bar.set_postfix({k: f"{np.mean(v[-steps:]):.3f}" for k, v in history.items()})
  return state, history, seconds + time.perf_counter() - start, None


def fit(step_fn, state, x, y, retain_idx, forget_idx, *, mesh, epochs, batch_size,
        forget_batch_size, iterate, seed, desc, progress=True, augment=False,
        checkpoints: checkpoint.RunCheckpoints | None = None, every: int = 0,
        log=None) -> FitResult:
  """Runs ``epochs`` epochs of ``step_fn`` over ``mesh``, one jitted call per step.

  An epoch walks once through the ``iterate`` set ("retain" or "forget") in
  batches; the other set's batches cycle alongside. ``step_fn`` runs under
  ``shard_map`` with the batches split over the mesh's data axis (build it
  with ``axis_name="data"`` objectives); the data and the state are
  replicated. Compilation is timed separately from the run. (One call per
  step rather than a ``lax.scan`` over the epoch: XLA:CPU runs convolutions
  inside loops an order of magnitude slower.) With ``augment``, both batches
  get a random crop and flip (:mod:`lur_jax.augment`) keyed by the step,
  drawn for the global batch, so the result does not depend on the mesh.

  With ``checkpoints``, the state, the position in the data order and the
  metric history are saved every ``every`` steps (0: never; the caller saves
  the finished run), and the run continues from the newest readable checkpoint; the data order is
  replayed from the seed, so a resumed run is bit-identical to an
  uninterrupted one. Metrics are checked at every save and epoch end: at the
  first non-finite loss or gradient norm the run stops, keeping the last
  good checkpoint.

  Args:
    step_fn: a pure ``(state, retain_batch, forget_batch) -> (state, metrics)``.
    state: the starting :class:`~lur_jax.TrainState`.
    x, y: the training set's inputs ``[N, ...]`` and labels ``[N]``.
    retain_idx, forget_idx: indices of D_r and D_f into ``x``.
    mesh: the device mesh (:func:`~lur_jax.make_mesh`).
    epochs: passes over the ``iterate`` set.
    batch_size, forget_batch_size: global batch sizes of the two sets.
    iterate: ``"retain"`` or ``"forget"``.
    seed: determines the data order (with ``desc``).
    desc: the progress bar's label.
    progress: show a progress bar.
    augment: random crop and flip on both batches.
    checkpoints: a :class:`~lur_jax.RunCheckpoints`, or ``None``.
    every: save every this many steps (0: never).
    log: ``str -> None`` for the resume line (default ``print``).

  Returns:
    A :class:`FitResult` whose state is this process's host copy; seconds
    exclude compilation and checkpoint writes.
  """
  data.check_finite(x)
  steps = steps_per_epoch(iterate, retain_idx, forget_idx, batch_size, forget_batch_size)
  total = epochs * steps
  order = DataOrder(seed, retain_idx, forget_idx, batch_size, forget_batch_size, steps)
  state, position, history, seconds = _resume(checkpoints, state, desc, total, log)
  order.skip(position // steps)

  def put(batches):
    return parallel.put(batches, NamedSharding(mesh, P(None, parallel.AXIS)))

  x, y, state = parallel.put((x, y, state), parallel.replicated(mesh))  # once
  r, f = put(order.next_epoch())
  with compile_timer() as compile_seconds:
    compiled = jax.jit(indexed(parallel.shard_step(step_fn, mesh), augment),
                       donate_argnums=0).lower(
        state, x, y, r, f, np.int32(0)).compile()
  with tqdm(total=total, initial=position, desc=desc, disable=not progress, file=sys.stderr,
            leave=False, unit="step") as bar:
    state, history, seconds, diverged_at = _run_steps(
        compiled, state, (x, y, r, f), order, put, _Progress(position, history, seconds),
        steps=steps, total=total, checkpoints=checkpoints, every=every, bar=bar)
  state = parallel.to_host(state)
  finite = all(bool(np.isfinite(leaf).all()) for leaf in jax.tree.leaves(state.params))
  if diverged_at is None and not finite:  # the last update overflowed
    diverged_at = total
  return FitResult(state, seconds, compile_seconds[0], total, history, diverged_at)
