"""The class-forgetting study for a conditional diffusion model.

Train the DDPM on every class (the original), retrain it without the
forgotten classes (the reference), unlearn with each method, and judge every
model by what it generates: an independently trained classifier (trained on
real images only) labels the samples.

- UA: 100 − the classifier's accuracy on images generated for the forgotten
  classes (percent).
- kept accuracy: its accuracy on images generated for each kept class.
- FD: the Fréchet distance between generated and real kept-class images in
  the classifier's penultimate feature space. This is *not* Inception-FID:
  numbers are comparable within one dataset and classifier only.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from lur_jax import (checkpoint, diffusion, experiment, losses, methods, models, parallel,
                     plots, train)

GRID_PER_CLASS = 10


def objectives(schedule: diffusion.Schedule, p_uncond: float) -> methods.Objectives:
  """The diffusion losses in the form :class:`lur_jax.methods.Context` takes."""
  return methods.Objectives(
      retain=lambda apply_fn, num_classes, axis_name: diffusion.noise_objective(
          apply_fn, schedule, num_classes, p_uncond=p_uncond, axis_name=axis_name),
      forget=lambda name, apply_fn, num_classes, axis_name: diffusion.forget_objective(
          name, apply_fn, schedule, num_classes, axis_name),
      per_example=lambda apply_fn: diffusion.per_example_loss(apply_fn, schedule))


def schedule_of(config) -> diffusion.Schedule:
  d = config.diffusion
  return diffusion.linear_schedule(d.steps, d.beta_start, d.beta_end)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½) of two feature sets ``[N, D]``."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(cov_a)
  root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  distance = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
              - 2.0 * np.sum(np.sqrt(np.clip(inner, 0, None))))
  return float(max(distance, 0.0))


def make_sampler(exp: experiment.Experiment, chunk: int = 250):
  """``sample(params, labels, key) -> images [N, ...] in [0, 1]`` on the host, in chunks."""
  cfg = exp.config
  d, schedule = cfg.diffusion, schedule_of(cfg)
  shape = exp.splits.train.x.shape[1:]
  kw = dict(null_class=exp.splits.num_classes, guidance=d.guidance)
  if d.sampler == "ddim":
    kw.update(steps=d.sample_steps, eta=d.eta)
  sampler = diffusion.ddim_sample if d.sampler == "ddim" else diffusion.ddpm_sample
  run = jax.jit(lambda params, labels, key: sampler(exp.model.apply, params, schedule, key,
                                                    labels, shape, **kw))

  def sample(params, labels, key):
    out = []
    for start in range(0, len(labels), chunk):
      part = np.asarray(labels[start:start + chunk], np.int32)
      pad = chunk - len(part)  # one compiled shape for every chunk
      images = run(params, jnp.asarray(np.pad(part, (0, pad))), jax.random.fold_in(key, start))
      out.append(np.asarray(images)[:len(part)])
    return np.concatenate(out)
  return sample


class Judge:
  """The evaluation classifier: predictions and penultimate features, in chunks."""

  def __init__(self, model: models.Model, variables: dict, chunk: int = 1024):
    self._variables, self._chunk = variables, chunk
    self._logits = jax.jit(lambda v, x: model.eval_apply(v["params"], v["model_state"], x))
    self._features = jax.jit(lambda v, x: model.features(v["params"], v["model_state"], x))

  def _map(self, fn, x):
    return np.concatenate([np.asarray(fn(self._variables, x[i:i + self._chunk]))
                           for i in range(0, len(x), self._chunk)])

  def predict(self, x) -> np.ndarray:
    return self._map(self._logits, x).argmax(-1)

  def features(self, x) -> np.ndarray:
    return self._map(self._features, x)


def _classifier(exp, out_dir, log, progress) -> tuple[Judge, dict]:
  """Trains (or reuses) the evaluation classifier on the real training images."""
  cfg, c = exp.config, exp.config.classifier
  splits = exp.splits
  model = models.build_model(c.model, splits.num_classes, splits.train.x.shape[1:])
  key = {"seed": cfg.seed, "data": cfg.data.to_dict(), "classifier": c.to_dict()}
  directory = os.path.join(out_dir, "models", f"classifier-{experiment._fingerprint(key)}")
  init = jax.random.key(experiment._method_seed(cfg.seed, "classifier"))
  variables = {"params": model.init(init), "model_state": model.init_state(init)}
  restored = checkpoint.restore_model(directory, jax.eval_shape(lambda: variables))
  if restored is not None:
    log(f"reusing the evaluation classifier from {directory}")
    variables, meta = restored
  else:
    tx = train.sgd(c.lr, c.momentum, c.weight_decay)
    ce = losses.ce_objective(model.apply, parallel.AXIS)  # the step runs under shard_map
    step = train.objective_step(lambda p, rb, fb: ce(p, rb), tx)
    every = np.arange(len(splits.train))
    result = experiment.fit(
        step, train.init_state(variables["params"], tx, init, variables["model_state"]),
        splits.train.x, splits.train.y, every, every[:1], mesh=exp.mesh, epochs=c.epochs,
        batch_size=c.batch_size, forget_batch_size=c.batch_size, iterate="retain",
        seed=experiment._method_seed(cfg.seed, "classifier-order"), desc="classifier",
        progress=progress)
    variables = {"params": result.state.params, "model_state": result.state.model_state}
  judge = Judge(model, variables)  # one judge, compiled once
  if restored is None:
    accuracy = np.mean(judge.predict(splits.test.x) == splits.test.y)
    meta = {"test_accuracy": 100.0 * float(accuracy), "seconds": result.seconds, "key": key}
    checkpoint.save_model(directory, variables, meta)
  log(f"evaluation classifier: {meta['test_accuracy']:.2f}% on the real test images")
  return judge, {"model": c.model, "test_accuracy": meta["test_accuracy"],
                 "seconds": meta["seconds"]}


def make_measure(exp, judge: Judge, out_dir: str):
  """``measure(variables, name) -> row``: samples, judges and draws ``samples/<name>.png``."""
  cfg, splits, fs = exp.config, exp.splits, exp.forget
  forgotten = list(fs.forgotten_classes)
  kept = [c for c in range(splits.num_classes) if c not in forgotten]
  sample = make_sampler(exp)
  key = jax.random.fold_in(jax.random.key(cfg.seed), 0x5A)  # the same noise for every model
  real = splits.train.x[fs.retain]
  real_features = judge.features(real)
  os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)

  def measure(variables, name):
    start = time.perf_counter()
    params = variables["params"]
    labels = np.concatenate([np.repeat(forgotten, cfg.eval.forget_samples),
                             np.repeat(kept, cfg.eval.kept_samples)])
    images = sample(params, labels, key)
    predicted = judge.predict(images)
    is_forgotten = np.isin(labels, forgotten)
    row = {"UA": 100.0 - 100.0 * float(np.mean(predicted[is_forgotten] == labels[is_forgotten])),
           "kept_accuracy": 100.0 * float(np.mean(predicted[~is_forgotten]
                                                  == labels[~is_forgotten])),
           "FD": frechet_distance(judge.features(images[~is_forgotten]), real_features),
           "forgotten_as": {int(c): int(n) for c, n in zip(*np.unique(
               predicted[is_forgotten], return_counts=True))},
           "kept_class_accuracy": {int(c): 100.0 * float(np.mean(predicted[labels == c] == c))
                                   for c in kept},
           "eval_seconds": time.perf_counter() - start}  # sampling and judging
    grid_labels = np.repeat(np.arange(splits.num_classes), GRID_PER_CLASS)
    if parallel.is_writer():
      plots.save_grid(
          sample(params, grid_labels, jax.random.fold_in(key, 1)), splits.num_classes,
          os.path.join(out_dir, "samples", f"{name}.png"),
          f"{name}: one row per class 0-{splits.num_classes - 1}, forgotten {forgotten}")
    return row
  return measure


def execute(exp: experiment.Experiment, out_dir: str, *, progress: bool = True, log=None) -> dict:
  """Runs the diffusion study (see :func:`lur_jax.experiment.run`)."""
  log = log or (lambda msg: print(msg, file=sys.stderr))
  cfg, fs = exp.config, exp.forget
  os.makedirs(out_dir, exist_ok=True)
  judge, judge_info = _classifier(exp, out_dir, log, progress)
  measure = make_measure(exp, judge, out_dir)
  original, original_fit, reused = experiment._from_scratch(
      exp, out_dir, "original", np.arange(len(exp.splits.train)), log, progress)
  results = {**experiment.header(exp), "classifier": judge_info,
             "original": {**measure(original, "original"), "seconds": original_fit.seconds,
                          "reused": reused},
             "methods": {}}
  for name in exp.method_names:
    row, _ = experiment._method_row(exp, out_dir, name, original, measure, log, progress)
    results["methods"][name] = row
  reference = results["methods"].get("retrain")
  for row in [*results["methods"].values(), results["original"]]:
    ok = reference is not None and "FD" in row and "FD" in reference
    row["FD_vs_retrain"] = row["FD"] / reference["FD"] if ok else None
    row["seconds_vs_retrain"] = row["seconds"] / reference["seconds"] if reference else None
  if parallel.is_writer():
    checkpoint.write_atomic(os.path.join(out_dir, "results.md"), markdown_table(results))
    checkpoint.write_json(os.path.join(out_dir, "results.json"), results)
  return results


def markdown_table(results: dict) -> str:
  """One row per model: UA, kept-class accuracy, FD, FD / retrain's, seconds."""
  def cell(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"
  lines = ["| method | UA | kept acc | FD (kept) | FD / retrain | seconds | × retrain |",
           "|---|---|---|---|---|---|---|"]
  for name, row in {"original": results["original"], **results["methods"]}.items():
    if "UA" not in row:
      lines.append(f"| {name} | diverged at step {row['diverged_at_step']} |||| "
                   f"{cell(row['seconds'])} | {cell(row['seconds_vs_retrain'], 3)} |")
      continue
    lines.append(f"| {name} | {cell(row['UA'])} | {cell(row['kept_accuracy'])} | "
                 f"{cell(row['FD'], 3)} | {cell(row['FD_vs_retrain'])} | "
                 f"{cell(row['seconds'])} | {cell(row['seconds_vs_retrain'], 3)} |")
  return "\n".join(lines) + "\n"
