"""Diffusion: the class-forgetting study for a conditional DDPM.

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
import time

import jax
import jax.numpy as jnp
import numpy as np

from lur_jax import models
from lur_jax.core import checks, losses, methods, streams, train
from lur_jax.models import diffusion
from lur_jax.study import plots, results
from lur_jax.tasks import base
from lur_jax.training import cache as cache_lib, loop, parallel

GRID_PER_CLASS = 10


def objectives(schedule: diffusion.Schedule, p_uncond: float) -> methods.Objectives:
  """The diffusion losses in the form :class:`lur_jax.core.methods.Context` takes."""
  return methods.Objectives(
      retain=lambda apply_fn, num_classes: diffusion.noise_objective(
          apply_fn, schedule, num_classes, p_uncond=p_uncond),
      forget=lambda name, apply_fn, num_classes: diffusion.forget_objective(
          name, apply_fn, schedule, num_classes),
      per_example=lambda apply_fn: diffusion.per_example_loss(apply_fn, schedule))


def schedule_of(config) -> diffusion.Schedule:
  d = config.diffusion
  return diffusion.linear_schedule(d.steps, d.beta_start, d.beta_end)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """The Fréchet distance between Gaussians fitted to two feature sets.

  Args:
    a, b: ``[N_a, D]`` and ``[N_b, D]`` features (e.g. a judge's penultimate layer).

  Returns:
    ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½), ≥ 0, in float64.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(cov_a)
  root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  distance = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
              - 2.0 * np.sum(np.sqrt(np.clip(inner, 0, None))))
  return float(max(distance, 0.0))


def make_sampler(exp, chunk: int = 250):
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


def _train_judge(exp, model, variables, init, progress) -> dict:
  """Trains the evaluation classifier on the real training images."""
  c, splits = exp.config.classifier, exp.splits
  tx = train.sgd(c.lr, c.momentum, c.weight_decay)
  ce = losses.ce_objective(model.apply)
  step = train.objective_step(lambda p, rb, fb: ce(p, rb), tx)
  every = np.arange(len(splits.train))
  result = loop.fit(
      step, train.init_state(variables["params"], tx, init, variables["model_state"]),
      splits.train.x, splits.train.y, every, mesh=exp.mesh, epochs=c.epochs,
      batch_size=c.batch_size, iterate="retain",
      seed=streams.derive_seed(exp.config.seed, "classifier-order"), desc="classifier",
      progress=progress)
  return {"variables": train.variables_of(result.state),
          "seconds": result.seconds}


def _judge(exp, cache, log, progress) -> tuple[Judge, dict]:
  """Trains (or reuses) the evaluation classifier on the real training images."""
  cfg, c = exp.config, exp.config.classifier
  splits = exp.splits
  model = models.build_model(c.model, splits.num_classes, splits.train.x.shape[1:])
  key = {"seed": cfg.seed, "data": cfg.data.to_dict(), "classifier": c.to_dict()}
  init = jax.random.key(streams.derive_seed(cfg.seed, "classifier"))
  variables = train.Variables(params=model.init(init), model_state=model.init_state(init))

  def make(checkpoints) -> cache_lib.Trained:
    del checkpoints  # short: no checkpoints
    trained = _train_judge(exp, model, variables, init, progress)
    judge = Judge(model, trained["variables"])
    accuracy = np.mean(judge.predict(splits.test.x) == splits.test.y)
    return cache_lib.Trained(trained["variables"], {"test_accuracy": 100.0 * float(accuracy),
                                                    "seconds": trained["seconds"]})

  cached, reused = cache.memoised("classifier", key, make, jax.eval_shape(lambda: variables))
  if reused:
    log(f"reusing the evaluation classifier from {cached.directory}")
  judge, meta = Judge(model, cached.variables), cached.meta  # one judge, compiled once
  log(f"evaluation classifier: {meta['test_accuracy']:.2f}% on the real test images")
  return judge, {"model": c.model, "test_accuracy": meta["test_accuracy"],
                 "seconds": meta["seconds"]}


def make_measure(exp, judge: Judge, out_dir: str, grids: bool = True):
  """``measure(variables, name) -> row``: samples, judges and (with ``grids``)
  draws ``samples/<name>.png``."""
  cfg, splits, fs = exp.config, exp.splits, exp.forget
  forgotten = list(fs.forgotten_classes)
  kept = [c for c in range(splits.num_classes) if c not in forgotten]
  sample = make_sampler(exp)
  key = streams.key(cfg.seed, streams.SAMPLES)  # the same noise for every model
  real = splits.train.x[fs.retain]
  real_features = judge.features(real)
  if grids:
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
    if grids and parallel.is_writer():
      plots.save_grid(
          sample(params, grid_labels, jax.random.fold_in(key, 1)), splits.num_classes,
          os.path.join(out_dir, "samples", f"{name}.png"),
          f"{name}: one row per class 0-{splits.num_classes - 1}, forgotten {forgotten}")
    return row
  return measure


def measurer(exp, cache, log, progress, grids: bool = True):
  """The judge (trained once per data and seed), then :func:`make_measure`."""
  judge, judge_info = _judge(exp, cache, log, progress)
  return make_measure(exp, judge, cache.out_dir, grids), {"classifier": judge_info}


def compare(row: dict, reference: dict | None) -> dict:
  ok = reference is not None and "FD" in row and "FD" in reference
  return {"FD_vs_retrain": row["FD"] / reference["FD"] if ok else None}


def check(config, method_names, devices) -> None:
  """The checks only a diffusion study needs (see configs/ddpm_digits.py)."""
  checks.one_of("model.name", config.model.name, ("unet",))
  checks.one_of("forget.kind", config.forget.kind, ("class",))
  d = config.diffusion
  checks.number_in("diffusion.steps", d.steps, 2, 100_000, kind=int)
  for key in ("beta_start", "beta_end"):
    checks.number_in(f"diffusion.{key}", d[key], 1e-8, 1)
  if not d.beta_start < d.beta_end:
    raise ValueError(f"diffusion.beta_start={d.beta_start!r} >= diffusion.beta_end="
                     f"{d.beta_end!r}; allowed: beta_start < beta_end")
  checks.number_in("diffusion.p_uncond", d.p_uncond, 0, 1)
  checks.number_in("diffusion.guidance", d.guidance, 0, 100, closed_high=True)
  checks.one_of("diffusion.sampler", d.sampler, diffusion.SAMPLERS)
  checks.number_in("diffusion.sample_steps", d.sample_steps, 1, d.steps, kind=int,
                   closed_high=True)
  checks.number_in("diffusion.eta", d.eta, 0, 1, closed_high=True)
  for key in ("eval.forget_samples", "eval.kept_samples", "classifier.epochs",
              "classifier.batch_size"):
    section, leaf = key.split(".")
    checks.positive(config[section][leaf], key, int)
  checks.positive(config.classifier.lr, "classifier.lr")
  checks.one_of("classifier.model", config.classifier.model, tuple(models.MODELS))
  parallel.check_divisible("classifier.batch_size", config.classifier.batch_size, devices)


def build(config, splits) -> base.Built:
  kw = {k: v for k, v in config.model.items() if k != "name"}
  model = diffusion.build_unet(splits.num_classes, splits.train.x.shape[1:], **kw)
  return base.Built(model, objectives(schedule_of(config), config.diffusion.p_uncond))


TASK = base.Task(
    check=check, build=build, measurer=measurer, compare=compare,
    columns=(results.Column("UA", "UA"), results.Column("kept acc", "kept_accuracy"),
             results.Column("FD (kept)", "FD", 3), results.Column("FD / retrain", "FD_vs_retrain")),
    cache_key=lambda cfg: {"diffusion": cfg.diffusion.to_dict(),
                           "classifier": cfg.classifier.to_dict()})
