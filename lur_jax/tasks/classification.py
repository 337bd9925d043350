"""Classification: UA, RA, TA and MIA-efficacy against retraining (SalUn's protocol)."""

from __future__ import annotations

from lur_jax import models
from lur_jax.core import checks, methods, metrics
from lur_jax.study import plugins, results
from lur_jax.tasks import base


def check(config, method_names, devices) -> None:
  del method_names, devices
  if not plugins.is_import_path(config.model.name):
    checks.one_of("model.name", config.model.name, tuple(models.MODELS))


def build(config, splits) -> base.Built:
  """The model on the data's example shape; ``model.name`` is a built-in or an import path."""
  kw = {k: v for k, v in config.model.items() if k != "name"}
  shape = splits.train.x.shape[1:]
  make = (plugins.user_model if plugins.is_import_path(config.model.name)
          else models.build_model)
  return base.Built(make(config.model.name, splits.num_classes, shape, **kw),
                    methods.CLASSIFICATION)


def measurer(exp, cache, log, progress):
  del cache, log, progress
  predict = metrics.make_predict(exp.model.eval_apply)
  fs = exp.forget

  def measure(variables, name):
    del name
    return metrics.evaluate(predict, variables, exp.splits.train, fs.forget, fs.retain,
                            fs.test, exp.config.seed)
  return measure, {}


def compare(row: dict, reference: dict | None) -> dict:
  ok = reference is not None and "UA" in row and "UA" in reference
  return {"avg_gap": metrics.avg_gap(row, reference) if ok else None}


TASK = base.Task(
    check=check, build=build, measurer=measurer, compare=compare,
    columns=(*(results.Column(k, k) for k in metrics.METRICS),
             results.Column("Avg Gap", "avg_gap")))
