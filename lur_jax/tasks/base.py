"""The task interface: what a study asks of classification, diffusion, or a task of yours."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from lur_jax import methods, models, results


class Built(NamedTuple):
  """A task's models and the losses its methods use.

  Attributes:
    model: the :class:`~lur_jax.Model`.
    step_model: the same model, BatchNorm synchronised over the data axis.
    objectives: the methods' losses (:class:`~lur_jax.Objectives`).
  """

  model: models.Model
  step_model: models.Model
  objectives: methods.Objectives


class Task(NamedTuple):
  """A task plug-in (register it in ``lur_jax.tasks.TASKS`` under the name
  that ``config.task`` selects).

  Attributes:
    check: ``(config, method_names, devices) -> None``; raises ValueError on
      a bad value in the task's own config sections, before data is read.
    build: ``(config, splits) -> Built``: the model(s) and the methods'
      :class:`lur_jax.Objectives`.
    measurer: ``(exp, cache, log, progress) -> (measure, header)``:
      ``measure(variables, name) -> row`` scores one model; ``header`` is a
      dict added to results.json (what the measure itself needed, e.g. a
      trained judge).
    compare: ``(row, retrain_row | None) -> dict``: the columns relative to
      retraining (``avg_gap``, ``FD_vs_retrain``).
    columns: the results table's columns, after the method name.
    cache_key: ``config -> dict``: the task's sections that determine a
      trained model (added to every cache fingerprint).
  """

  check: Callable
  build: Callable
  measurer: Callable
  compare: Callable
  columns: tuple[results.Column, ...]
  cache_key: Callable = lambda config: {}
