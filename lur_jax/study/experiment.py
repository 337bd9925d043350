"""The unlearning study: train the original model once, run every method,
measure each against retraining, and write the results.

:func:`prepare` validates a config and loads what the study needs;
:func:`execute` runs it; :func:`run` does both. The study never names a
concrete task: the config's task (:mod:`lur_jax.tasks`) builds the model and
measures it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from lur_jax import models, tasks
from lur_jax.core import data, methods
from lur_jax.study import (
  config as config_lib,
  datasets,
  plots,
  plugins,
  results as results_lib,
  runner,
)
from lur_jax.training import cache as cache_lib, checkpoint, parallel, sharding


class Experiment(NamedTuple):
  """A validated config with its data, forget split, model and task.

  Attributes:
    config: the config, its forget kind's settings laid over it.
    method_names: the methods to run, in order.
    settings: every method's resolved :class:`~lur_jax.Settings` that runs on the task
      (``retrain``'s is the ``train`` recipe), resolved once here.
    splits: the data (:class:`~lur_jax.Splits`).
    forget: the forget set, its complement and the TA test set.
    model: the task's model (:class:`~lur_jax.Model`).
    mesh: the device mesh.
    objectives: the methods' losses (:class:`~lur_jax.Objectives`).
    task: the task plug-in (:class:`~lur_jax.Task`).
  """

  config: ml_collections.ConfigDict
  method_names: list[str]
  settings: dict[str, methods.Settings]
  splits: data.Splits
  forget: data.ForgetSplit
  model: models.Model
  mesh: jax.sharding.Mesh
  objectives: methods.Objectives
  task: tasks.Task


def _load_splits(config) -> data.Splits:
  d = config.data
  if plugins.is_import_path(d.name):
    splits = plugins.user_splits(d.name, config.seed)
  else:
    directory = d.get("tfds_data_dir", "") if d.name.startswith("tfds:") else d.get("dir", "")
    splits = datasets.load_dataset(d.name, config.seed, directory)
  splits = data.subsample(splits, config.seed, train=d.get("train_limit", 0),
                          test=d.get("test_limit", 0))
  if config.eval.split == "val":  # for tuning: TA and MIA on the validation hold-out
    splits = splits._replace(test=splits.val)
  return splits


class Variants(NamedTuple):
  """What :func:`prepare` returns: a study's variants, ``[(scope, Experiment)]``. Most
  tasks have one, scope ``""``, run into ``out/``; TOFU has one per forget split, each run
  into ``out/<scope>/`` (:attr:`lur_jax.Task.variants`)."""

  experiments: list

  def only(self, what: str = "this run") -> Experiment:
    """The one experiment; ValueError for a study of several variants."""
    if len(self.experiments) != 1:
      scopes = ", ".join(s for s, _ in self.experiments)
      raise ValueError(f"{what}: the study has {len(self.experiments)} variants ({scopes}); "
                       "allowed: a study of one (e.g. one forget split)")
    return self.experiments[0][1]


def prepare(config: ml_collections.ConfigDict, first_only: bool = False) -> Variants:
  """Validates ``config`` and loads what the run needs; no training happens.

  Args:
    config: the experiment config (:func:`lur_jax.study.config.load` reads a file).
    first_only: prepare the first variant alone (the planner: every variant has the same
      model and batches).

  Returns:
    The study's :class:`Variants`, every one checked before any work (one for most
    tasks: ``prepare(config).only()`` is its :class:`Experiment`).

  Raises:
    ValueError: naming the bad value and what is allowed.
  """
  variants = tasks.of(config).variants
  if variants is None:
    return Variants([("", _prepare_one(config))])
  chosen = variants(config)[:1] if first_only else variants(config)
  return Variants([(scope, _prepare_one(c)) for scope, c in chosen])


def _prepare_one(config: ml_collections.ConfigDict) -> Experiment:
  parallel.distributed_init(**config.get("distributed", {}))
  names = config_lib.validate(config)
  task = tasks.of(config)
  methods.check_task(names, config.get("task", "classification"))
  sizes = config_lib.mesh_sizes(config)
  task.check(config, names, sizes["data"] * sizes["fsdp"])
  mesh = sharding.make_mesh(**sizes, devices=parallel.check_devices(config.get("devices", 0)))
  if task.load is not None:
    splits, forget = task.load(config)
  else:
    splits = _load_splits(config)
    f = config.forget
    forget = data.make_forget_split(splits, f.kind, seed=config.seed, fraction=f.fraction,
                                    classes=f.classes, indices=f.indices)
  built = task.build(config, splits)
  abstract_params = jax.eval_shape(built.model.init, jax.random.key(0))
  _check_sharding(config, built.model, mesh)
  settings = {n: config_lib.method_settings(config, n)
              for n in methods.for_task(config.get("task", "classification"))}
  for name in names:
    methods.check_objectives(settings[name], built.objectives)
    check = methods.METHODS[name].check
    if check is not None:
      check(settings[name], abstract_params)
  return Experiment(config, names, settings, splits, forget, built.model, mesh,
                    built.objectives, task)


def _check_sharding(config, model, mesh) -> None:
  """ValueError for parameters that cannot be sharded over ``mesh`` as asked, and, on any
  mesh, for a logical name no rule maps (found here, before a slice is rented)."""
  if model.partitioned is not None:
    sharding.check_names(jax.eval_shape(model.partitioned, jax.random.key(0)),
                         sharding.rules_of(model))
  if sharding.is_data_parallel(mesh):
    return
  shardings = sharding.model_shardings(model, mesh)
  if mesh.shape["tensor"] > 1 and not sharding.uses_tensor_axis(shardings):
    raise ValueError(f"mesh.tensor={mesh.shape['tensor']}: model {config.model.name!r} names "
                     "no tensor-parallel axes; allowed: mesh.tensor=1, or a model whose "
                     "parameters carry logical names (lur_jax.models.transformer)")


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


def run(config: ml_collections.ConfigDict, out_dir: str, *, progress: bool = True,
        log=None) -> dict:
  """Runs the whole study and writes ``out_dir/results.json`` and ``results.md``.

  Args:
    config: the experiment config (see ``configs/digits.py``).
    out_dir: output folder; created if missing. A rerun with the same folder
      reuses the trained models and finished methods.
    progress: show tqdm progress bars on stderr.
    log: a one-argument callable for status lines (default: stderr).

  Returns:
    The results dict that was written to ``results.json``.

  Raises:
    ValueError: on a bad config or output folder, before any work.
    lur_jax.training.checkpoint.WriteError: when a write under ``out_dir`` fails (no
      space, quota, read-only, permission); the folder stays resumable.
  """
  exp = prepare(config)
  check_out_dir(out_dir)
  return execute(exp, out_dir, progress=progress, log=log)


def execute(variants: Variants, out_dir: str, *, progress: bool = True, log=None) -> dict:
  """Runs a prepared study: :func:`run` after :func:`prepare`.

  Variants run one after the other, each with its scope: its results go to
  ``out_dir/<scope>/`` and its models to ``out_dir/models/<scope>/`` (the shared ones
  stay in ``out_dir/models/``). A study of several variants returns ``{scope:
  results}`` and ``out_dir/results.md`` holds every variant's table.

  Args:
    variants: from :func:`prepare`.
    out_dir: the output folder (see :func:`run`).
    progress: show progress bars.
    log: a one-argument callable for status lines (default: stderr).

  Returns:
    The results dict written to ``results.json`` (``{scope: results}`` for several).
  """
  if len(variants.experiments) == 1 and not variants.experiments[0][0]:
    return _execute(variants.only(), out_dir, progress, log, "")
  out = {s: _execute(e, out_dir, progress, log, s) for s, e in variants.experiments}
  if parallel.is_writer():
    checkpoint.write_atomic(os.path.join(out_dir, "results.md"), markdown_table(out))
  return out


def _execute(exp: Experiment, out_dir: str, progress: bool, log, scope: str) -> dict:
  """One variant of :func:`execute`."""
  log = log or (lambda msg: print(msg, file=sys.stderr))
  warning = config_lib.kind_warning(exp.config)
  if warning:
    log(warning)
  with checkpoint.writing(out_dir):
    os.makedirs(os.path.join(out_dir, scope), exist_ok=True)
  cache = cache_lib.ModelCache(out_dir, log, scope)
  measure, task_header = exp.task.measurer(exp, cache, log, progress)
  original, original_facts, reused = runner.from_scratch(
      exp, cache, "original", np.arange(len(exp.splits.train)), log, progress)
  results = {**results_lib.header(exp), **task_header,
             "original": {**measure(original, "original"), "seconds": original_facts["seconds"],
                          "reused": reused},
             "methods": {}}
  diagnostics = {}
  for name in exp.method_names:
    row, history = runner.method_row(exp, cache, name, original, measure, log, progress)
    results["methods"][name] = row
    if "grad_cosine" in history:
      diagnostics[name] = history
  reference = exp.task.reference(exp) if exp.task.reference is not None else None
  results_lib.add_comparisons(results, exp.task.compare, reference)
  if parallel.is_writer():  # process 0 writes the results
    _write(exp, os.path.join(out_dir, scope), results, diagnostics)
    if exp.task.write is not None:
      exp.task.write(exp, results, os.path.join(out_dir, scope))
  return results


def markdown_table(results: dict) -> str:
  """The results table of a results dict (its config names the task); a table per
  variant, each under its name, for a study of variants."""
  if "methods" not in results:
    return "\n".join(f"## {scope}\n\n{markdown_table(r)}" for scope, r in results.items())
  return results_lib.markdown_table(results, tasks.of(results["config"]).columns)


def _write(exp: Experiment, out_dir: str, results: dict, diagnostics: dict) -> None:
  """results.json, results.md, and the gradient-conflict diagnostics (JSON and PNG)."""
  config = exp.config
  checkpoint.write_json(os.path.join(out_dir, "diagnostics.json"), diagnostics)
  if diagnostics:
    f = config.forget
    setting = (f"{f.fraction:.0%} random" if f.kind == "random" else
               f"classes {f.classes}" if f.kind == "class" else
               f"authors of {f.split}" if f.kind == "authors" else "given indices")
    plots.plot_diagnostics(diagnostics, os.path.join(out_dir, "diagnostics.png"),
                           f"{config.data.name}, {config.model.name}, forgetting {setting}, "
                           f"seed {config.seed}")
  checkpoint.write_atomic(os.path.join(out_dir, "results.md"),
                          results_lib.markdown_table(results, exp.task.columns))
  checkpoint.write_json(os.path.join(out_dir, "results.json"), results)
