"""The training loop: the data order and its replay, one compiled step, compile
timing, checkpoints and the divergence scan.

:func:`run` is the one loop: it drives a :class:`~lur_jax.training.steppers.Stepper`
(one model, data-parallel or sharded over a mesh; or a vmapped ensemble)
through the steps of pure ``(state, retain_batch, forget_batch) -> (state,
metrics)`` functions (see :mod:`lur_jax.core.train`). :func:`fit` runs one model;
:func:`lur_jax.study.ensemble.fit` runs an ensemble; everything above them (which
method, which model, where results go) lives in :mod:`lur_jax.study.runner`.
"""

from __future__ import annotations

import math
import sys
import time
from typing import NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from lur_jax.core import data
from lur_jax.training import checkpoint, steppers


def steps_per_epoch(iterate: str, retain_idx, forget_idx, batch_size: int,
                    forget_batch_size: int) -> int:
  """Batches in one walk through the ``iterate`` set ("retain" or "forget")."""
  walked, walked_bs = ((retain_idx, batch_size) if iterate == "retain"
                       else (forget_idx, forget_batch_size))
  return max(1, math.ceil(len(walked) / walked_bs))


class DataOrder:
  """The batches of every epoch, drawn from one seed: replaying the first
  epochs brings a resumed run to the same place as an uninterrupted one.

  An empty forget set (plain training) gives empty forget batches and draws nothing.
  """

  def __init__(self, seed: int, retain_idx, forget_idx, batch_size: int,
               forget_batch_size: int, steps: int):
    self._rng = np.random.default_rng(seed)
    self._sets = ((np.asarray(retain_idx), batch_size),
                  (np.asarray(forget_idx, np.int64).reshape(-1), forget_batch_size))
    self._steps = steps

  def _draw(self, idx, batch_size):
    if not len(idx):
      return np.zeros((self._steps, 0), np.int32)
    return idx[data.batch_indices(self._rng, len(idx), batch_size, self._steps)].astype(np.int32)

  def next_epoch(self) -> tuple[np.ndarray, np.ndarray]:
    """``(retain, forget)`` example indices, each ``[steps, batch]`` int32."""
    return tuple(self._draw(idx, bs) for idx, bs in self._sets)

  def skip(self, epochs: int) -> None:
    for _ in range(epochs):
      self.next_epoch()


def _first_bad(steps: list[dict]) -> np.ndarray:
  """``[M]``: each member's first step (an index into ``steps``, each a dict of
  ``[M]`` metrics) with a value that is not finite; -1 for none."""
  bad = np.stack([~np.all([np.isfinite(v) for v in m.values()], axis=0) for m in steps])
  return np.where(bad.any(0), bad.argmax(0), -1)


def _resume(checkpoints, like, desc, total, log):
  """``(state or None, position, history, seconds)`` from the newest readable checkpoint."""
  restored = checkpoints.restore(like) if checkpoints is not None else None
  if restored is None:
    return None, 0, {}, 0.0
  state, meta = restored
  (log or print)(f"{desc}: resuming at step {meta['position']} of {total}")
  return state, meta["position"], meta.get("history", {}), meta["seconds"]


class _Progress(NamedTuple):
  position: int  # steps done
  history: dict  # metric -> per step, a list of M values
  seconds: float  # run time so far, compilation and checkpoint writes excluded


class _Stop:
  """Ctrl-C's state under :func:`on_interrupt`."""

  stepping = False  # inside a step loop: a Ctrl-C stops it at the next step
  requested = False


def on_interrupt(signum, frame) -> None:
  """A SIGINT handler (the command line installs it): inside a step loop the run stops
  before its next step, so no checkpoint write is cut in half; elsewhere, or at a second
  Ctrl-C, it interrupts at once."""
  del signum, frame
  if _Stop.stepping and not _Stop.requested:
    _Stop.requested = True
    return
  raise KeyboardInterrupt


def _run_steps(stepper, compiled, states, data_arrays, orders, batches, progress: _Progress, *,
               steps, total, checkpoints, every, bar):
  """:func:`_steps`, stoppable at a step boundary by :func:`on_interrupt`."""
  _Stop.stepping, _Stop.requested = True, False
  try:
    return _steps(stepper, compiled, states, data_arrays, orders, batches, progress,
                  steps=steps, total=total, checkpoints=checkpoints, every=every, bar=bar)
  finally:
    _Stop.stepping = False


def _steps(stepper, compiled, states, data_arrays, orders, batches, progress: _Progress, *,
           steps, total, checkpoints, every, bar):
  """Steps ``progress.position`` … ``total``; metrics reach the host at each save
  and epoch end. A member's first non-finite metric is where it diverged; the
  run stops when every member has, before saving again.

  Returns:
    ``(states, history, seconds, diverged_at [M])``.
  """
  history, seconds, pending = progress.history, progress.seconds, []
  diverged = np.full(stepper.members, -1)
  if history:  # resumed: members that diverged before the checkpoint stay diverged
    steps_run = len(next(iter(history.values())))
    diverged = _first_bad([{k: np.asarray(v[t]) for k, v in history.items()}
                           for t in range(steps_run)])
  start = time.perf_counter()
  for t in range(progress.position, total):
    if _Stop.requested:
      raise KeyboardInterrupt
    i = t % steps
    if i == 0 and t > progress.position:
      batches = stepper.place_batches([o.next_epoch() for o in orders])
    outs = [compiled(s, *data_arrays, r, f, np.int32(i)) for s, (r, f) in zip(states, batches)]
    states = [s for s, _ in outs]
    pending.append([m for _, m in outs])
    bar.update()
    done = t + 1
    save = checkpoints is not None and every and done % every == 0 and done < total
    if not (save or done % steps == 0 or done == total):
      continue
    host = [{k: np.concatenate([np.atleast_1d(g[k]) for g in groups]) for k in groups[0]}
            for groups in jax.device_get(pending)]
    pending, first = [], done - len(host)
    bad = _first_bad(host)
    diverged = np.where((diverged < 0) & (bad >= 0), first + bad, diverged)
    stop = bool((diverged >= 0).all())
    for m in host[:diverged.max() - first] if stop else host:
      for key, value in m.items():
        history.setdefault(key, []).append(value.tolist())
    if stop:
      return states, history, seconds + time.perf_counter() - start, diverged
    if save:
      seconds += time.perf_counter() - start
      checkpoints.save(done, stepper.joined(states),
                       {"position": done, "history": history, "seconds": seconds})
      start = time.perf_counter()
    bar.set_postfix({k: f"{np.nanmean(v[-steps:]):.3f}" for k, v in history.items()})
  jax.block_until_ready(states)
  return states, history, seconds + time.perf_counter() - start, diverged


class Interrupted(KeyboardInterrupt):
  """Ctrl-C during a run: where it stopped (``desc``, ``step`` of ``total``). The run's
  checkpoints up to there are kept, so the same call resumes it."""

  def __init__(self, desc: str, step: int, total: int):
    super().__init__(f"interrupted at {desc} step {step} of {total}")
    self.desc, self.step, self.total = desc, step, total


class Run(NamedTuple):
  """What a run returns: :func:`run`, :func:`fit` (one model, ``M`` = 1) and
  :func:`lur_jax.study.ensemble.fit` (``M`` members).

  Attributes:
    state: the final :class:`~lur_jax.TrainState` (this process's host copy; leaves
      with a leading member axis for an ensemble).
    seconds: the steps' wall clock, compilation and checkpoint writes excluded.
    compile_seconds: the time spent compiling the step (ahead of time).
    steps: the number of steps planned.
    history: metric -> ``[steps run, M]``, a resumed run's earlier steps included (the
      steps before every member diverged).
    diverged_at: ``[M]``, each member's first non-finite step, -1 for none.
  """

  state: object
  seconds: float
  compile_seconds: float
  steps: int
  history: dict
  diverged_at: np.ndarray

  def first_divergence(self, member: int = 0) -> int | None:
    """Member ``member``'s first non-finite step, or ``None``."""
    step = int(self.diverged_at[member])
    return None if step < 0 else step

  def history_of(self, member: int = 0) -> dict[str, list[float]]:
    """Member ``member``'s metric history as lists (JSON-able)."""
    return {k: v[:, member].tolist() for k, v in self.history.items()}


def run(stepper: steppers.Stepper, state, x, y, orders: list[DataOrder], *, steps: int,
        epochs: int, desc: str, progress: bool = True,
        checkpoints: checkpoint.RunCheckpoints | None = None, every: int = 0, log=None) -> Run:
  """Runs ``epochs`` epochs of ``steps`` steps, one compiled call per step and group.

  The state is placed on the devices by ``stepper`` (one model, replicated or
  sharded; or members spread over the mesh). With ``checkpoints``, the state, the
  position in the data order and the metric history are saved every
  ``every`` steps (0: never; the caller saves the finished run), and the run
  continues from the newest readable checkpoint, which may come from another
  mesh; the data order is replayed from the seeds, so a resumed run is
  bit-identical to an uninterrupted one. Metrics are checked at every save
  and epoch end: a member's first non-finite loss or gradient norm is where
  it diverged, and the run stops when every member has, keeping the last
  good checkpoint. (One call per step rather than a ``lax.scan`` over the
  epoch: XLA:CPU runs convolutions inside loops an order of magnitude slower.)

  Args:
    stepper: how the state lives on the devices and a step runs.
    state: the starting state (host arrays; with the member axis for an ensemble).
    x, y: the training set's inputs ``[N, ...]`` and labels ``[N]``.
    orders: one :class:`DataOrder` per member (one for one model).
    steps: steps per epoch.
    epochs: epochs to run.
    desc: the progress bar's label and the resume line's subject.
    progress: show a progress bar.
    checkpoints: a :class:`~lur_jax.RunCheckpoints`, or ``None``.
    every: save every this many steps (0: never).
    log: ``str -> None`` for the resume line (default ``print``).

  Returns:
    A :class:`Run`.
  """
  data.check_finite(x)
  total = epochs * steps
  states = stepper.place(state)
  like = stepper.joined(states) if checkpoints is not None else None  # the shape to restore
  restored, position, history, seconds = _resume(checkpoints, like, desc, total, log)
  if restored is not None:
    states = stepper.place(restored)
  for order in orders:
    order.skip(position // steps)
  data_arrays = stepper.place_data(x, y)
  first_batches = stepper.place_batches([o.next_epoch() for o in orders])
  with tqdm(total=total, initial=position, desc=desc, disable=not progress, file=sys.stderr,
            leave=False, unit="step") as bar:
    bar.set_postfix_str("compiling the step", refresh=True)  # seconds of silence otherwise
    start = time.perf_counter()  # compiled ahead of time: this is all its compilation
    compiled = stepper.compile(states[0], data_arrays, first_batches[0])
    compile_seconds = time.perf_counter() - start
    bar.set_postfix_str("", refresh=False)
    try:
      states, history, seconds, diverged = _run_steps(
          stepper, compiled, states, data_arrays, orders, first_batches,
          _Progress(position, history, seconds), steps=steps, total=total,
          checkpoints=checkpoints, every=every, bar=bar)
    except KeyboardInterrupt:
      if checkpoints is not None:  # let a write in flight end: the rerun resumes from it
        checkpoints.close()
      raise Interrupted(desc, int(bar.n), total) from None
  final = stepper.host(states)
  finite = stepper.finite(final)
  diverged = np.where((diverged < 0) & ~finite, total, diverged)  # the last update overflowed
  history = {k: np.asarray(v, np.float64).reshape(len(v), stepper.members)
             for k, v in history.items()}
  return Run(final, seconds, compile_seconds, total, history, diverged)


def fit(step_fn, state, x, y, retain_idx, forget_idx=(), *, mesh, epochs, batch_size,
        forget_batch_size=0, iterate="retain", seed, desc, progress=True, augment=False,
        shardings=None, checkpoints: checkpoint.RunCheckpoints | None = None, every: int = 0,
        log=None) -> Run:
  """Runs ``epochs`` epochs of ``step_fn`` for one model over ``mesh`` (see :func:`run`).

  An epoch walks once through the ``iterate`` set ("retain" or "forget") in
  batches; the other set's batches cycle alongside. ``step_fn`` is a plain
  step of the global batch, jitted with the state's ``shardings`` (from
  :func:`lur_jax.training.steppers.shardings_of`; ``None``: replicated) and the
  batches split over the mesh's ``data`` × ``fsdp`` axes. With ``augment``, both
  batches get a random crop and flip (:mod:`lur_jax.core.augment`) keyed by the
  step, drawn for the global batch, so the result does not depend on the mesh.

  Args:
    step_fn: a pure ``(state, retain_batch, forget_batch) -> (state, metrics)``.
    state: the starting :class:`~lur_jax.TrainState`.
    x, y: the training set's inputs ``[N, ...]`` and labels ``[N]``.
    retain_idx, forget_idx: indices of D_r and D_f into ``x``; without a forget
      set (plain training) the forget batches are empty.
    mesh: the device mesh (:func:`~lur_jax.make_mesh`).
    epochs: passes over the ``iterate`` set.
    batch_size, forget_batch_size: global batch sizes of the two sets.
    iterate: ``"retain"`` or ``"forget"``.
    seed: determines the data order.
    desc: the progress bar's label.
    progress: show a progress bar.
    augment: random crop and flip on both batches.
    shardings: the state's shardings, or ``None`` for a replicated state.
    checkpoints: a :class:`~lur_jax.RunCheckpoints`, or ``None``.
    every: save every this many steps (0: never).
    log: ``str -> None`` for the resume line (default ``print``).

  Returns:
    A :class:`Run` with ``M`` = 1 whose state is this process's host copy; seconds
    exclude compilation and checkpoint writes.
  """
  steps = steps_per_epoch(iterate, retain_idx, forget_idx, batch_size, forget_batch_size)
  order = DataOrder(seed, retain_idx, forget_idx, batch_size, forget_batch_size, steps)
  stepper = steppers.Sharded(step_fn, mesh, shardings, augment)
  return run(stepper, state, x, y, [order], steps=steps, epochs=epochs, desc=desc,
             progress=progress, checkpoints=checkpoints, every=every, log=log)
