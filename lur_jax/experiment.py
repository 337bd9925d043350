"""The unlearning study: train the original model once, run every method,
measure UA/RA/TA/MIA against retraining, and write the results."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from lur_jax import augment as augment_lib
from lur_jax import (checkpoint, config as config_lib, data, diffusion, methods, metrics, models,
                     parallel, plots, saliency, train)


class Experiment(NamedTuple):
  """A validated config with its data, forget split and model."""

  config: ml_collections.ConfigDict
  method_names: list[str]
  splits: data.Splits
  forget: data.ForgetSplit
  model: models.Model
  step_model: models.Model  # the same model with BatchNorm synchronised over the mesh
  mesh: jax.sharding.Mesh
  objectives: methods.Objectives = methods.CLASSIFICATION  # the methods' losses


def prepare(config: ml_collections.ConfigDict) -> Experiment:
  """Validates ``config`` and loads what the run needs; no training happens.

  Raises:
    ValueError: naming the bad value and what is allowed.
  """
  parallel.distributed_init(**config.get("distributed", {}))
  names = config_lib.validate(config)
  mesh = parallel.make_mesh(config.get("devices", 0))
  d = config.data
  directory = d.get("tfds_data_dir", "") if d.name.startswith("tfds:") else d.get("dir", "")
  splits = data.subsample(data.load_dataset(d.name, config.seed, directory), config.seed,
                          train=d.get("train_limit", 0), test=d.get("test_limit", 0))
  if config.eval.split == "val":  # for tuning: TA and MIA on the validation hold-out
    splits = splits._replace(test=splits.val)
  f = config.forget
  forget = data.make_forget_split(splits, f.kind, seed=config.seed, fraction=f.fraction,
                                  classes=f.classes, indices=f.indices)
  model_kw = {k: v for k, v in config.model.items() if k != "name"}
  shape = splits.train.x.shape[1:]
  objectives = methods.CLASSIFICATION
  if config_lib.task(config) == "diffusion":
    from lur_jax import generative  # pylint: disable=g-import-not-at-top
    model = step_model = diffusion.build_unet(splits.num_classes, shape, **model_kw)
    objectives = generative.objectives(generative.schedule_of(config),
                                       config.diffusion.p_uncond)
  else:
    model, step_model = (
        models.build_model(config.model.name, splits.num_classes, shape, axis_name=axis,
                           **model_kw) for axis in (None, parallel.AXIS))
  abstract_params = jax.eval_shape(model.init, jax.random.key(0))
  for name in names:
    check = methods.METHODS[name].check
    if check is not None:
      check(config_lib.method_settings(config, name), abstract_params)
  return Experiment(config, names, splits, forget, model, step_model, mesh, objectives)


def _method_seed(seed: int, name: str) -> int:
  return zlib.crc32(f"{seed}/{name}".encode())


class FitResult(NamedTuple):
  state: train.TrainState
  seconds: float
  compile_seconds: float
  steps: int
  history: dict  # metric name -> per-step list
  diverged_at: int | None


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

  Returns:
    A :class:`FitResult` whose state is this process's host copy; seconds
    exclude compilation and checkpoint writes.
  """
  data.check_finite(x)
  steps = _steps_per_epoch(iterate, retain_idx, forget_idx, batch_size, forget_batch_size)
  total = epochs * steps
  order = np.random.default_rng(seed)
  batch_sharding = NamedSharding(mesh, P(None, parallel.AXIS))

  def epoch_indices():
    r = retain_idx[data.batch_indices(order, len(retain_idx), batch_size, steps)]
    f = forget_idx[data.batch_indices(order, len(forget_idx), forget_batch_size, steps)]
    return r.astype(np.int32), f.astype(np.int32)

  def epoch_batches():
    return parallel.put(epoch_indices(), batch_sharding)

  sharded_step = parallel.shard_step(step_fn, mesh)

  def train_step(state, x, y, r, f, i):
    ri, fi = r[i], f[i]
    xr, xf = x[ri], x[fi]
    if augment:
      key_r, key_f = jax.random.split(jax.random.fold_in(
          jax.random.fold_in(state.rng, state.step), 0x5EED))
      xr, xf = augment_lib.random_crop_flip(key_r, xr), augment_lib.random_crop_flip(key_f, xf)
    return sharded_step(state, {"x": xr, "y": y[ri]}, {"x": xf, "y": y[fi]})

  position, history, seconds = 0, {}, 0.0
  restored = checkpoints.restore(state) if checkpoints is not None else None
  if restored is not None:
    state, meta = restored
    position, history, seconds = meta["position"], meta["history"], meta["seconds"]
    if log is not None:
      log(f"{desc}: resuming at step {position} of {total}")
  for _ in range(position // steps):  # replay the data order up to this epoch
    epoch_indices()

  x, y, state = parallel.put((x, y, state), parallel.replicated(mesh))  # once
  r, f = epoch_batches()
  start = time.perf_counter()
  compiled = jax.jit(train_step, donate_argnums=0).lower(
      state, x, y, r, f, np.int32(0)).compile()
  compile_seconds = time.perf_counter() - start

  diverged_at, pending = None, []
  start = time.perf_counter()
  with tqdm(total=total, initial=position, desc=desc, disable=not progress, file=sys.stderr,
            leave=False, unit="step") as bar:
    for t in range(position, total):
      i = t % steps
      if i == 0 and t > position:
        r, f = epoch_batches()
      state, step_metrics = compiled(state, x, y, r, f, np.int32(i))
      pending.append(step_metrics)
      bar.update()
      done = t + 1
      save = checkpoints is not None and every and done % every == 0 and done < total
      if not (save or done % steps == 0 or done == total):
        continue
      host, pending = parallel.to_host(pending), []
      bad = [k for k, m in enumerate(host) if not all(np.isfinite(v) for v in m.values())]
      for m in host[:bad[0]] if bad else host:
        for key, value in m.items():
          history.setdefault(key, []).append(float(value))
      if bad:
        diverged_at = done - len(host) + bad[0]
        break
      if save:
        seconds += time.perf_counter() - start
        checkpoints.save(done, parallel.to_host(state),
                         {"position": done, "history": history, "seconds": seconds})
        start = time.perf_counter()
      bar.set_postfix({k: f"{np.mean(v[-steps:]):.3f}" for k, v in history.items()})
  state = parallel.to_host(state)
  seconds += time.perf_counter() - start
  finite = all(bool(np.isfinite(leaf).all()) for leaf in jax.tree.leaves(state.params))
  if diverged_at is None and not finite:  # the last update overflowed
    diverged_at = total
  return FitResult(state, seconds, compile_seconds, total, history, diverged_at)


def _versions() -> dict:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  out = {"python": platform.python_version()}
  for pkg in ("lur_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
              "scikit-learn", "ml_collections"):
    try:
      out[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      out[pkg] = None
  out["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")  # compiler flags change speed and memory
  return out


def device_description(mesh: jax.sharding.Mesh | None = None) -> str:
  """``platform:kind xN`` for the devices of ``mesh`` (default: all devices)."""
  devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
  return f"{devices[0].platform}:{devices[0].device_kind} x{len(devices)}"


def _fingerprint(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _task_key(cfg) -> dict:
  """The sections a diffusion study adds (noise schedule, sampler, judge); none
  for classification, whose fingerprints stay as they were."""
  if config_lib.task(cfg) != "diffusion":
    return {}
  return {"diffusion": cfg.diffusion.to_dict(), "classifier": cfg.classifier.to_dict()}


def _initial_variables(exp: Experiment) -> dict:
  """The init shared by the original model and retrain (they differ only in data):
  ``{"params": ..., "model_state": ...}``."""
  key = jax.random.fold_in(jax.random.key(exp.config.seed), 0)
  return {"params": exp.model.init(key), "model_state": exp.model.init_state(key)}


def _from_scratch(exp: Experiment, out_dir: str, desc: str, retain_idx, log, progress):
  """Trains on ``retain_idx`` from the shared init with the ``train`` recipe, or
  restores that model from an earlier run in ``out_dir``.

  The original model (``desc="original"``, all of D) and retrain (D_r) are
  cached under ``models/<desc>-<fingerprint>``; the fingerprint covers
  everything that determines them (seed, data, model, recipe, retained set).

  Returns:
    ``(variables, FitResult without state, reused)``.
  """
  cfg = exp.config
  key = {"seed": cfg.seed, "data": cfg.data.to_dict(), "model": cfg.model.to_dict(),
         "train": cfg.train.to_dict(), **_task_key(cfg),
         "retain": hashlib.sha256(np.asarray(retain_idx).tobytes()).hexdigest()}
  name = f"{desc}-{_fingerprint(key)}"
  directory = os.path.join(out_dir, "models", name)
  abstract = jax.eval_shape(lambda: _initial_variables(exp))
  restored = checkpoint.restore_model(directory, abstract)
  if restored is not None:
    log(f"reusing the {desc} model from {directory}")
    meta = restored[1]
    return restored[0], FitResult(None, meta["seconds"], meta["compile_seconds"],
                                  meta["steps"], {}, None), True
  checkpoints = os.path.join(out_dir, "checkpoints", name)
  result = _run_method(exp, "retrain", _initial_variables(exp), np.asarray(retain_idx),
                       np.asarray(retain_idx[:1]), desc=desc, progress=progress,
                       checkpoint_dir=checkpoints, log=log)
  variables = _variables(result.state)
  if result.diverged_at is None:
    checkpoint.save_model(directory, variables, {
        "seconds": result.seconds, "compile_seconds": result.compile_seconds,
        "steps": result.steps, "key": key})
    _remove(checkpoints)
  return variables, result._replace(state=None), False


def _variables(state: train.TrainState) -> dict:
  return {"params": state.params, "model_state": state.model_state}


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


@contextlib.contextmanager
def compile_timer():
  """Yields a one-element list that accumulates JAX's own compile durations."""
  total = [0.0]
  def listener(event, duration, **_):
    if event in _COMPILE_EVENTS:
      total[0] += duration
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield total
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _steps_per_epoch(iterate, retain_idx, forget_idx, batch_size, forget_batch_size) -> int:
  walked, walked_bs = ((retain_idx, batch_size) if iterate == "retain"
                       else (forget_idx, forget_batch_size))
  return max(1, math.ceil(len(walked) / walked_bs))


def _state_update(model: models.Model, model_state):
  """Running statistics follow the retain batches; ``None`` without BatchNorm."""
  if not jax.tree.leaves(model_state):
    return None
  return lambda params, state, batch: models.update_running_stats(
      state, model.batch_moments(params, batch["x"]))


def _run_method(exp: Experiment, name: str, variables, retain_idx, forget_idx, *, desc,
                progress, checkpoint_dir: str | None = None, log=None) -> FitResult:
  """Runs method ``name`` from ``variables``; resumes from ``checkpoint_dir``."""
  cfg = exp.config
  settings = config_lib.method_settings(cfg, name)
  forget_bs = settings.get("forget_batch_size", settings.batch_size)
  method = methods.METHODS[name]
  settings.total_steps = settings.epochs * _steps_per_epoch(
      method.iterate, retain_idx, forget_idx, settings.batch_size, forget_bs)
  tx = train.optimizer(settings)
  if method.wrap_tx is not None:
    tx = method.wrap_tx(settings, tx)
  params, model_state = variables["params"], variables["model_state"]
  ctx = methods.Context(exp.model.apply, exp.splits.num_classes, exp.model.init,
                        objectives=exp.objectives)
  seed = _method_seed(cfg.seed, desc)
  x, y = exp.splits.train.x, exp.splits.train.y
  start = time.perf_counter()
  with compile_timer() as compile_seconds:
    if method.prepare is not None:  # saliency and trimming count as unlearning time
      params, mask = method.prepare(ctx, settings, params, (x[forget_idx], y[forget_idx]),
                                    jax.random.fold_in(jax.random.key(seed), 1))
      if mask is not None:
        tx = optax.chain(tx, saliency.masked_updates(mask))
      jax.block_until_ready(params)
  prepare_seconds = time.perf_counter() - start - compile_seconds[0]
  step_fn = method.make_step(ctx._replace(  # runs under shard_map
      apply_fn=exp.step_model.apply, axis_name=parallel.AXIS,
      state_update=_state_update(exp.step_model, model_state)), settings, tx)
  state = train.init_state(params, tx, jax.random.key(seed), model_state)
  checkpoints = None
  if checkpoint_dir is not None:
    options = config_lib.checkpoint_options(cfg)
    checkpoints = checkpoint.RunCheckpoints(checkpoint_dir, options["keep"], warn=log)
  try:
    result = fit(step_fn, state, x, y, retain_idx, forget_idx, mesh=exp.mesh,
                 epochs=settings.epochs, batch_size=settings.batch_size,
                 forget_batch_size=forget_bs, iterate=method.iterate, seed=seed, desc=desc,
                 progress=progress, augment=cfg.data.get("augment", False),
                 checkpoints=checkpoints, every=options["every"] if checkpoints else 0,
                 log=log)
  finally:
    if checkpoints is not None:
      checkpoints.close()
  return result._replace(seconds=result.seconds + prepare_seconds,
                         compile_seconds=result.compile_seconds + compile_seconds[0])


def _remove(path: str) -> None:
  """Deletes a folder (process 0 does it, the others wait)."""
  if parallel.is_writer():
    shutil.rmtree(path, ignore_errors=True)
  parallel.barrier(f"remove {path}")


def _save_replacing(directory: str, variables, meta: dict) -> None:
  tmp = directory + ".tmp"
  _remove(tmp)
  checkpoint.save_model(tmp, variables, meta)  # every process takes part
  if parallel.is_writer():
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
  parallel.barrier(f"replace {directory}")


def run(config: ml_collections.ConfigDict, out_dir: str, *, progress: bool = True,
        log=None) -> dict:
  """Runs the whole study and writes ``out_dir/results.json`` and ``results.md``.

  Args:
    config: the experiment config (see ``configs/digits.py``).
    out_dir: output folder; created if missing. A rerun with the same folder
      reuses the trained original model.
    progress: show tqdm progress bars on stderr.
    log: a one-argument callable for status lines (default: stderr).

  Returns:
    The results dict that was written to ``results.json``.

  Raises:
    ValueError: on a bad config or output folder, before any work.
  """
  exp = prepare(config)
  check_out_dir(out_dir)
  return execute(exp, out_dir, progress=progress, log=log)


def header(exp: Experiment) -> dict:
  """What every results.json starts with: config, versions, devices, data sizes."""
  fs = exp.forget
  return {"config": exp.config.to_dict(), "versions": _versions(),
          "device": device_description(exp.mesh),
          "devices": {"count": exp.mesh.size, "kind": exp.mesh.devices.flat[0].device_kind,
                      "processes": jax.process_count()},
          "data": {"train": len(exp.splits.train), "forget": len(fs.forget),
                   "retain": len(fs.retain), "test": len(fs.test),
                   "forgotten_classes": list(fs.forgotten_classes)}}


def execute(exp: Experiment, out_dir: str, *, progress: bool = True, log=None) -> dict:
  """Runs a prepared :class:`Experiment` (see :func:`run`)."""
  if config_lib.task(exp.config) == "diffusion":
    from lur_jax import generative  # pylint: disable=g-import-not-at-top
    return generative.execute(exp, out_dir, progress=progress, log=log)
  log = log or (lambda msg: print(msg, file=sys.stderr))
  config = exp.config
  os.makedirs(out_dir, exist_ok=True)
  x_train = exp.splits.train
  fs = exp.forget
  predict = metrics.make_predict(exp.model.eval_apply)

  def measure(variables, name):
    del name
    return metrics.evaluate(predict, variables, x_train, fs.forget, fs.retain, fs.test,
                            config.seed)

  original, original_fit, reused = _from_scratch(
      exp, out_dir, "original", np.arange(len(x_train)), log, progress)
  results = {**header(exp),
             "original": {**measure(original, "original"), "seconds": original_fit.seconds,
                          "reused": reused},
             "methods": {}}
  diagnostics = {}
  for name in exp.method_names:
    row, history = _method_row(exp, out_dir, name, original, measure, log, progress)
    results["methods"][name] = row
    if "grad_cosine" in history:
      diagnostics[name] = history
  _add_gaps(results["methods"], results["original"])
  if not parallel.is_writer():  # process 0 writes the results
    return results
  checkpoint.write_json(os.path.join(out_dir, "diagnostics.json"), diagnostics)
  if diagnostics:
    f = config.forget
    setting = (f"{f.fraction:.0%} random" if f.kind == "random" else
               f"classes {f.classes}" if f.kind == "class" else "given indices")
    plots.plot_diagnostics(diagnostics, os.path.join(out_dir, "diagnostics.png"),
                           f"{config.data.name}, {config.model.name}, forgetting {setting}, "
                           f"seed {config.seed}")
  checkpoint.write_atomic(os.path.join(out_dir, "results.md"), markdown_table(results))
  checkpoint.write_json(os.path.join(out_dir, "results.json"), results)
  return results


def _method_row(exp: Experiment, out_dir: str, name: str, original, measure, log,
                progress) -> tuple[dict, dict]:
  """Runs method ``name`` -> ``(results row, metric history)``.

  A method that finished (or diverged) in an earlier run with the same
  settings is not run again: its row comes from ``models/<name>``. An
  interrupted one resumes from ``checkpoints/<name>-<fingerprint>``.
  """
  cfg = exp.config
  directory = os.path.join(out_dir, "models", name)
  fingerprint = None
  if methods.METHODS[name].from_scratch:
    variables, result, reused = _from_scratch(exp, out_dir, name, exp.forget.retain, log,
                                              progress)
  else:
    fingerprint = _fingerprint({
        "seed": cfg.seed, "data": cfg.data.to_dict(), "model": cfg.model.to_dict(),
        "train": cfg.train.to_dict(), "forget": cfg.forget.to_dict(), **_task_key(cfg),
        "eval": cfg.eval.to_dict(), "settings": config_lib.method_settings(cfg, name).to_dict()})
    earlier = checkpoint.restore_meta(directory)
    if earlier is not None and earlier.get("fingerprint") == fingerprint:
      log(f"{name}: finished in an earlier run with these settings; reusing its results")
      return {**earlier["row"], "reused": True}, earlier["history"]
    checkpoints = os.path.join(out_dir, "checkpoints", f"{name}-{fingerprint}")
    result = _run_method(exp, name, original, exp.forget.retain, exp.forget.forget, desc=name,
                         progress=progress, checkpoint_dir=checkpoints, log=log)
    variables, reused = _variables(result.state), False
  row = {"seconds": result.seconds, "compile_seconds": result.compile_seconds,
         "steps": result.steps, "reused": reused,
         "params_checksum": checkpoint.params_checksum(variables)}
  if result.diverged_at is None:
    try:
      measured = measure(variables, name)
      row = {**measured, **row}
    except FloatingPointError:  # finite params whose logits overflow
      result = result._replace(diverged_at=result.steps)
  if result.diverged_at is None:
    log(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in measured.items()
                                if isinstance(v, float)) + f", {result.seconds:.2f} s")
  else:
    row.update(diverged=True, diverged_at_step=result.diverged_at)
    log(f"{name}: diverged (non-finite loss or gradient) at step {result.diverged_at}; "
        "stopped there, its last good checkpoint is kept, the other methods go on")
  _save_replacing(directory, variables, {
      "method": name, "params_checksum": row["params_checksum"], "fingerprint": fingerprint,
      "row": row, "history": result.history})
  if fingerprint is not None and result.diverged_at is None:
    _remove(checkpoints)
  return row, result.history


def check_out_dir(out_dir: str) -> None:
  """Raises ValueError unless ``out_dir`` is, or can be made, a writable folder."""
  if not out_dir:
    raise ValueError("--out ''; allowed: a folder path")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"--out {out_dir!r} is a file; allowed: a folder (new or existing)")
  probe = os.path.abspath(out_dir)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise ValueError(f"--out {out_dir!r} lies under the file {probe!r}; allowed: a folder")
  try:  # a real write: permissions, read-only file systems, root on /proc
    with tempfile.TemporaryFile(dir=probe):
      pass
  except OSError as e:
    raise ValueError(f"--out {out_dir!r} is not writable ({e.strerror})") from None


def _add_gaps(rows: dict, original: dict) -> None:
  """Adds avg_gap and seconds_vs_retrain (None without a retrain row)."""
  reference = rows.get("retrain")
  for row in [*rows.values(), original]:
    ok = reference is not None and "UA" in row and "UA" in reference
    row["avg_gap"] = metrics.avg_gap(row, reference) if ok else None
    row["seconds_vs_retrain"] = (row["seconds"] / reference["seconds"]
                                 if reference is not None else None)


def markdown_table(results: dict) -> str:
  """One row per method (and the original model): UA, RA, TA, MIA, Avg Gap, seconds
  (for a diffusion study, :func:`lur_jax.generative.markdown_table`)."""
  if results["config"].get("task") == "diffusion":
    from lur_jax import generative  # pylint: disable=g-import-not-at-top
    return generative.markdown_table(results)
  def cell(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"
  lines = ["| method | UA | RA | TA | MIA | Avg Gap | seconds | × retrain |",
           "|---|---|---|---|---|---|---|---|"]
  rows = {"original": results["original"], **results["methods"]}
  for name, row in rows.items():
    if "UA" not in row:
      lines.append(f"| {name} | diverged at step {row['diverged_at_step']} |||||"
                   f" {cell(row['seconds'])} | {cell(row['seconds_vs_retrain'], 3)} |")
      continue
    lines.append(f"| {name} | " + " | ".join(cell(row[k]) for k in metrics.METRICS)
                 + f" | {cell(row['avg_gap'])} | {cell(row['seconds'])} |"
                 f" {cell(row['seconds_vs_retrain'], 3)} |")
  return "\n".join(lines) + "\n"
