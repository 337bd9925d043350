"""``lur-jax plan``: what each method's step needs per device, before renting a slice.

Nothing is allocated: the study's model and every method's step are compiled from abstract
shapes for a mesh of ``devices`` simulated CPU devices (the config's ``mesh.*``), and
``compiled.memory_analysis()`` gives the per-device bytes (argument + output + temp − alias,
as :func:`lur_jax.training.sharding.memory_bytes`). The device-resident training set is counted, as
the study keeps it on every device. LUR runs in every mode, at K = 1, 2 and 4, with its
``remat`` off and on. The numbers are XLA:CPU's plan of the same partitioned program: a TPU's
or GPU's compiler fuses and schedules differently, so read them as an estimate.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
from concurrent import futures
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from lur_jax import study
from lur_jax.core import lur, methods, saliency, train
from lur_jax.study import config as config_lib, runner
from lur_jax.training import sharding, steppers

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "t": 1e12, "tb": 1e12, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_memory(text: str) -> int:
  """``"16GiB"``, ``"512 MiB"``, ``"8e9"``, ``"16GB"`` -> bytes.

  Raises:
    ValueError: for anything else, naming the value and what is allowed.
  """
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
  if not match or match[2] not in _UNITS or float(match[1]) <= 0:
    raise ValueError(f"--memory {text!r}; allowed: a size > 0 like 16GiB, 512MiB, 80GB or "
                     "8e9 (bytes)")
  return int(float(match[1]) * _UNITS[match[2]])


class Row(NamedTuple):
  """One planned step.

  Attributes:
    name: the method, or ``lur mode=… K=… remat=…``.
    bytes: ``{"argument", "output", "temp", "alias", "total"}`` per device.
    fits: whether ``total`` fits the memory given.
  """

  name: str
  bytes: dict
  fits: bool


def _variants(names: list[str], lur_settings=None) -> list[tuple[str, list[str]]]:
  """``(label, overrides)``: each method as configured, then LUR in every mode and K, with
  remat on and off where it can matter (K > 1 outside ``first_order``: elsewhere it is the
  same program by construction), less the variant that is ``lur`` as configured."""
  out = [(name, []) for name in names]
  if "lur" not in names:
    return out
  configured = (lur_settings["mode"], lur_settings["inner_steps"], bool(lur_settings["remat"])
                ) if lur_settings is not None else None
  for mode in lur.MODES:
    for k in (1, 2, 4):
      for remat in ((False, True) if k > 1 and mode != "first_order" else (False,)):
        if (mode, k, remat) == configured:
          continue
        out.append((f"lur mode={mode} K={k} remat={'on' if remat else 'off'}",
                    [f"lur.mode={mode}", f"lur.inner_steps={k}", f"lur.remat={remat}"]))
  return out


#: The table's footnote on the rows it leaves out.
SAME_BY_CONSTRUCTION = ("Not repeated, being the same program: remat at K = 1 and in "
                        "first_order (nothing is differentiated through the virtual steps "
                        "there), and the LUR variant that is `lur` as configured.")


def _abstract(tree, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=s),
                      tree, shardings)


def step_bytes(exp, name: str, settings: methods.Settings, reads: dict | None = None) -> dict:
  """Per-device bytes of one step of method ``name`` with ``settings`` on ``exp``'s mesh,
  compiled abstractly.

  ``reads`` caches, per method, whether its step reads NPO's reference: every variant of
  a method shares the answer (mode, K and remat change how its losses are differentiated,
  never which losses), so each variant after the first is traced once, not twice.
  """
  p = runner.recipe(name, settings, exp.forget.retain, exp.forget.forget)
  key = jax.random.key(0)
  tx = p.optimizer()
  def init():
    params = exp.model.init(key)
    start = tx
    if p.method.masked:  # SalUn's mask (a bool per parameter) rides in the optimiser state
      start = optax.chain(tx, saliency.masked_updates(jax.tree.map(
          lambda a: jnp.ones(a.shape, bool), params)))
    return train.init_state(params, start, key, exp.model.init_state(key))
  state = jax.eval_shape(init)
  if p.method.masked:
    tx = optax.chain(tx, saliency.masked_updates())
  x, y = exp.splits.train.x, exp.splits.train.y
  # NPO's reference is in the state where the step reads it: it counts, a second model
  step_fn, state = runner.make_step(exp, p, tx, state, runner.batch_shapes(x, y, p),
                                    reads=None if reads is None else reads.get(name))
  if reads is not None:
    reads[name] = state.reference is not None
  replicated = NamedSharding(exp.mesh, P())
  shardings = steppers.shardings_of(state, exp.model, exp.mesh)
  stepper = steppers.Sharded(step_fn, exp.mesh, shardings)
  data_arrays = (jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                 jax.ShapeDtypeStruct(y.shape, y.dtype, sharding=replicated))
  steps = p.total_steps // p.settings.epochs
  by_batch = NamedSharding(exp.mesh, P(None, stepper.batch_axes))
  batches = (jax.ShapeDtypeStruct((steps, p.settings.batch_size), jnp.int32, sharding=by_batch),
             jax.ShapeDtypeStruct((steps, p.forget_batch_size), jnp.int32, sharding=by_batch))
  return sharding.memory_bytes(stepper.compile(_abstract(state, shardings), data_arrays,
                                               batches))


def plan(config, memory: int, log=print, progress: bool = True) -> list[Row]:
  """Plans every method of ``config`` (and LUR's variants) on its mesh, compiling the
  distinct programs side by side: one process per core (tracing holds Python's lock, so
  threads would take turns), each preparing the study once; in this process on one core.

  Args:
    config: the experiment config, its ``devices`` and ``mesh.*`` set.
    memory: bytes per device.
    log: ``str -> None`` for what is assumed (the mesh, the batches) and each row as it
      is planned.
    progress: a progress bar over the programs.

  Returns:
    One :class:`Row` per method and LUR variant, in order.
  """
  names = config_lib.validate(config)
  jobs = []
  lur_settings = config_lib.method_settings(config, "lur") if "lur" in names else None
  for label, sets in _variants(names, lur_settings):
    variant = config_lib.apply_overrides(config, [f"methods={label.split()[0]}", *sets])
    config_lib.validate(variant)
    name = label.split()[0]
    jobs.append((label, name, config_lib.method_settings(variant, name)))
  workers = min(len(jobs), os.cpu_count() or 1)
  with _pool(workers, config) as pool:
    pending = {pool.submit(_planned, name, settings): label for label, name, settings in jobs}
    # while the planning processes prepare the study, this one does, for the line below
    exp = (_EXP["exp"] if workers == 1 else
           study.prepare(config, first_only=True).experiments[0][1])
    u = exp.settings["graddiff" if "graddiff" in exp.settings else exp.method_names[0]]
    log(f"planning {len(jobs)} program{'s' * (len(jobs) != 1)} on a mesh of "
        f"{dict(exp.mesh.shape)}: examples of shape {tuple(exp.splits.train.x.shape[1:])}, a "
        f"retain batch of {u.batch_size} and a forget batch of "
        f"{u.get('forget_batch_size', u.batch_size)} (global, per step)")
    counted = {}
    with tqdm(total=len(jobs), desc="plan", unit="program", disable=not progress,
              file=sys.stderr, leave=False) as bar:
      for done in futures.as_completed(pending):
        label = pending[done]
        counted[label] = done.result()
        bar.update()
        line = f"{label}: {size(counted[label]['total'])} per device"
        if progress:
          bar.write(line, file=sys.stderr)  # above the bar
        else:
          log(line)
  return [Row(label, counted[label], counted[label]["total"] <= memory) for label, _, _ in jobs]


_EXP = {}  # what each planning process keeps: {"exp": the study, "reads": step_bytes's cache}


def _start(config, platforms) -> None:
  """A planning process's start: JAX on the parent's platforms (``XLA_FLAGS``, the device
  count among them, come with the environment), then the study, prepared once."""
  if platforms:
    jax.config.update("jax_platforms", platforms)
  try:
    _EXP.update(exp=study.prepare(config, first_only=True).experiments[0][1], reads={})
  except Exception as e:  # pylint: disable=broad-except  # raised by the jobs, not printed here
    _EXP["error"] = e


def _planned(name: str, settings: methods.Settings) -> dict:
  if "error" in _EXP:
    raise _EXP["error"]
  return step_bytes(_EXP["exp"], name, settings, _EXP["reads"])


def _pool(workers: int, config) -> futures.Executor:
  """``workers`` fresh processes (spawned: JAX's runtime is not fork-safe), or this one."""
  if workers > 1:
    return futures.ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                       initializer=_start,
                                       initargs=(config, jax.config.jax_platforms))
  _EXP.clear()
  _start(config, None)
  if "error" in _EXP:
    raise _EXP.pop("error")
  return futures.ThreadPoolExecutor(1)


def size(n: float) -> str:
  """Bytes as ``"1.23 GiB"``, ``"45.6 MiB"`` or ``"7.8 KiB"``."""
  for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
    if n >= scale:
      return f"{n / scale:.2f} {unit}"
  return f"{int(n)} B"


def markdown(rows: list[Row], memory: int, mesh: dict) -> str:
  """The plan as a Markdown table (with each step's total over GradDiff's, if planned)."""
  base = next((r.bytes["total"] for r in rows if r.name == "graddiff"), None)
  lines = [f"Per-device memory of one step on a mesh of {mesh}, {size(memory)} per device "
           "(XLA:CPU's plan of the partitioned program; an estimate for TPU and GPU).", "",
           "| step | total | × GradDiff | arguments | temporaries | fits |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    b = r.bytes
    ratio = f"{b['total'] / base:.2f}" if base else ""
    lines.append(f"| {r.name} | {size(b['total'])} | {ratio} | {size(b['argument'])} | "
                 f"{size(b['temp'])} | {'yes' if r.fits else 'no'} |")
  if any(r.name.startswith("lur mode=") for r in rows):
    lines += ["", SAME_BY_CONSTRUCTION]
  return "\n".join(lines) + "\n"
