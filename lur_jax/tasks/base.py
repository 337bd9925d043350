"""The task interface: what a study asks of classification, diffusion, or a task of yours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from lur_jax import models
from lur_jax.core import data, methods
from lur_jax.study import results


class Built(NamedTuple):
  """A task's model and the losses its methods use.

  Attributes:
    model: the :class:`~lur_jax.Model`.
    objectives: the methods' losses (:class:`~lur_jax.Objectives`).
  """

  model: models.Model
  objectives: methods.Objectives


class Check(Protocol):
  """``(config, method_names, devices) -> None``: a ValueError for a bad value."""

  def __call__(self, config: Any, method_names: list[str], devices: int) -> None: ...


class Build(Protocol):
  """``(config, splits) -> Built``."""

  def __call__(self, config: Any, splits: data.Splits) -> Built: ...


Measure = Callable[[dict, str], dict]  # (variables, name) -> results row


class Measurer(Protocol):
  """``(exp, cache, log, progress) -> (measure, header)``."""

  def __call__(self, exp: Any, cache: Any, log: Callable,
               progress: bool) -> tuple[Measure, dict]: ...


class Compare(Protocol):
  """``(row, retrain_row or None) -> columns``."""

  def __call__(self, row: dict, reference: dict | None) -> dict: ...


class Load(Protocol):
  """``config -> (splits, forget split)``."""

  def __call__(self, config: Any) -> tuple[data.Splits, data.ForgetSplit]: ...


class Initial(Protocol):
  """``(exp, cache, log, progress) -> variables``: where original and retrain start."""

  def __call__(self, exp: Any, cache: Any, log: Callable, progress: bool) -> dict: ...


class Given(Protocol):
  """``(exp, name) -> variables or None``: a model the task is given, not trained."""

  def __call__(self, exp: Any, name: str) -> dict | None: ...


class Reference(Protocol):
  """``exp -> row or None``: the retrain row when no retrain is run (from logs)."""

  def __call__(self, exp: Any) -> dict | None: ...


class Write(Protocol):
  """``(exp, results, out_dir) -> None``: the task's own files beside results.json."""

  def __call__(self, exp: Any, results: dict, out_dir: str) -> None: ...


class Variants(Protocol):
  """``config -> [(scope, config)]``."""

  def __call__(self, config: Any) -> list[tuple[str, Any]]: ...


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
    load: optional ``config -> (Splits, ForgetSplit)``: the task's own data and
      forget set, in place of ``config.data`` and ``config.forget``.
    initial: optional ``(exp, cache, log, progress) -> variables``: where the
      original and retrain start (a pretrained model), in place of a fresh init.
    variants: optional ``config -> [(scope, config)]``: one study runs each
      (its results under ``out/<scope>/``), sharing the models of
      ``initial`` and the original.
    given: optional ``(exp, name) -> variables | None``: the ``"original"`` or
      ``"retrain"`` model as given (a pretrained checkpoint), in place of training it;
      ``None`` trains it.
    reference: optional ``exp -> row | None``: what ``compare`` reads as the retrain row
      when the study runs no retrain (a retain model's evaluation logs).
    write: optional ``(exp, results, out_dir) -> None``: the task's own files, written with
      results.json (after the comparisons).
  """

  check: Check
  build: Build
  measurer: Measurer
  compare: Compare
  columns: tuple[results.Column, ...]
  cache_key: Callable[[Any], dict] = lambda config: {}
  load: Load | None = None
  initial: Initial | None = None
  variants: Variants | None = None
  given: Given | None = None
  reference: Reference | None = None
  write: Write | None = None
