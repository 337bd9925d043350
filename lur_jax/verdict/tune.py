"""Equal-budget tuning and the final runs, as vmapped ensembles.

Every arm's S drawn settings run on the same T tuning seeds in one ensemble
per discrete choice (S·T members, the continuous settings per member); each
setting is scored by its mean Avg Gap to the retrain of the same seed, on the
validation split, and the lowest wins. The winners then run on F final seeds
(other forget sets, other originals) and are measured on the test split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent import futures
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from lur_jax.audit import scores
from lur_jax.core import methods, streams, train
from lur_jax.study import ensemble, runner
from lur_jax.training import cache as cache_lib
from lur_jax.verdict import space as space_lib


class Scorer(NamedTuple):
  """How a task's models are measured: ``score(variables, members) -> [M, k]``
  (one row of ``names`` per member, NaN when it diverged), ``gap(values,
  reference) -> [...]`` the distance of each row to its own seed's retrain,
  ``chunk``, the members trained per call (0: all), and optionally ``extra(values,
  reference) -> {name: [...]}``, more per-seed numbers for the tables."""

  names: tuple[str, ...]
  score: Callable
  gap: Callable
  chunk: int = 0
  extra: Callable | None = None


def avg_gap(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """Avg Gap: the mean absolute difference of the metrics to the retrain's."""
  return np.abs(values - reference).mean(-1)


def classification_scorer(exp, evaluate, chunk: int = 0) -> Scorer:
  """UA, RA, TA and MIA of each member on its own sets, Avg Gap to the retrain."""
  return Scorer(("UA", "RA", "TA", "MIA"),
                lambda variables, members: member_metrics(exp, variables, members, evaluate,
                                                          chunk), avg_gap, chunk)


class Seeds(NamedTuple):
  """One group of seeds: its members, its originals, and the retrains' scores
  (``[count, k]``, see :class:`Scorer`)."""

  members: ensemble.Members
  originals: dict
  reference: np.ndarray


def members_for(exp, count: int, name: str) -> ensemble.Members:
  """``count`` seeds; random forgetting draws each its own forget set (of the
  config's size), other kinds forget the config's set every time."""
  if exp.config.forget.kind == "random":
    return ensemble.random_members(exp, count, name)
  seeds = np.array([streams.derive_seed(exp.config.seed, f"{name}{i}") for i in range(count)])
  return ensemble.Members(seeds, np.tile(exp.forget.retain, (count, 1)),
                          np.tile(exp.forget.forget, (count, 1)))


def chunk_of(chunk: int, models: int) -> int:
  """``chunk`` when it divides ``models``, else 0 (all members in one call)."""
  return chunk if chunk and models % chunk == 0 else 0


def member_metrics(exp, variables, members: ensemble.Members, evaluate,
                   chunk: int = 0) -> np.ndarray:
  """``[M, 4]`` UA, RA, TA, MIA (percent) of each member on its own sets; NaN
  rows for members whose outputs are not finite. The SVC attacks are fitted
  in threads (scikit-learn's libsvm releases the GIL)."""
  out = scores.outputs(evaluate, variables, exp.splits.train, exp.forget.test,
                       chunk_of(chunk, len(members.seeds)), strict=False)

  def row(m):
    return scores.metrics_of(out, m, members.forget[m], members.retain[m], int(members.seeds[m]))
  with futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    return np.array(list(pool.map(row, range(len(members.seeds)))))


def seeds_group(exp, count: int, name: str, scorer: Scorer, *, cache=None, progress=True,
                log=print) -> Seeds:
  """Trains ``count`` originals (on all of D) and their retrains (on each D_r).

  With ``cache`` (a :class:`lur_jax.training.cache.ModelCache`) the originals and the
  retrains' metrics are kept under ``models/<name>`` and reused by a rerun of
  the same data, model, recipe, forget sets and evaluation (method sections
  may change: :func:`lur_jax.study.runner.run_key`).
  """
  members = members_for(exp, count, name)
  # "variables": saved as {"params", "model_state"} (earlier versions saved the params alone)
  key = {**runner.run_key(exp), "count": count, "name": name, "variables": True}
  abstract = train.Variables(
      params=jax.tree.map(lambda a: jax.ShapeDtypeStruct((count, *a.shape), a.dtype),
                          jax.eval_shape(exp.model.init, jax.random.key(0))), model_state={})
  make = lambda checkpoints: _train_seeds(exp, members, count, name, scorer, progress, log)
  if cache is None:
    cached = make(None)
  else:
    cached, reused = cache.memoised(name, key, make, abstract)
    if reused:
      log(f"verdict: {name}: reusing {cached.directory}")
  return Seeds(members, cached.variables,
               np.array(cached.meta["reference"], float).reshape(count, len(scorer.names)))


def _train_seeds(exp, members, count, name, scorer, progress, log) -> cache_lib.Trained:
  """The originals and their retrains' scores, as :func:`seeds` caches them."""
  n = len(exp.splits.train)
  every = np.tile(np.arange(n), (count, 1))
  on_all = ensemble.Members(members.seeds, every, every[:, :0])
  run = lambda m, desc: ensemble.unlearn(exp, "retrain", ensemble.fresh(exp.model, m.seeds), m,
                                         progress=progress, desc=desc,
                                         chunk=chunk_of(scorer.chunk, count))
  original = run(on_all, f"{name} originals ×{count}")
  retrain = run(members, f"{name} retrains ×{count}")
  if (retrain.diverged_at >= 0).any() or (original.diverged_at >= 0).any():
    raise FloatingPointError("an original or retrained model diverged; the train recipe "
                             "(train.lr) does not train this model")
  log(f"verdict: {name}: {count} originals {original.seconds:.1f} s, retrains "
      f"{retrain.seconds:.1f} s")
  reference = scorer.score(train.variables_of(retrain.state), members)
  return cache_lib.Trained(train.variables_of(original.state),
                           {"reference": reference.tolist()})


def with_settings(config, arm: space_lib.Arm, values: dict) -> ml_collections.ConfigDict:
  """``config`` with the arm's fixed settings and ``values`` in its method's section."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in {**arm.fixed, **values}.items():
    config[arm.method][key] = value
  return config


def run_settings(exp, arm: space_lib.Arm, settings: list[dict], group: Seeds, scorer: Scorer, *,
                 wrap=None, progress=True, desc="") -> tuple[np.ndarray, dict]:
  """Runs every setting on every seed of ``group``.

  Returns:
    ``([settings, seeds, k] scores, {"seconds", "compile_seconds", "history"})``;
    a member that diverged has NaN metrics. ``history`` holds the per-step
    metrics of the last program run (``[steps, members]`` each).
  """
  keys = space_lib.continuous_keys(arm.space)
  count = len(group.members.seeds)
  out = np.full((len(settings), count, len(scorer.names)), np.nan)
  info = {"seconds": 0.0, "compile_seconds": 0.0, "history": {}}
  programs = {}
  for i, s in enumerate(settings):
    programs.setdefault(tuple((k, v) for k, v in sorted(s.items()) if k not in keys), []).append(i)
  for fixed, chosen in programs.items():
    repeats = len(chosen)
    per = lambda a, n=repeats: np.concatenate([a] * n)  # member j of setting i: seed j % count
    members = ensemble.Members(*(per(a) for a in group.members))
    hparams = {k: np.repeat([settings[i][k] for i in chosen], count) for k in keys}
    starts = jax.tree.map(per, group.originals)
    result = ensemble.unlearn(exp, arm.method, starts, members,
                              settings=settings_of(exp, arm, dict(fixed)), hparams=hparams, wrap=wrap, progress=progress,
                              desc=f"{desc} {dict(fixed)} ×{len(members.seeds)}",
                              chunk=chunk_of(scorer.chunk, len(members.seeds)))
    values = scorer.score(train.variables_of(result.state), members)
    values[result.diverged_at >= 0] = np.nan
    out[chosen] = values.reshape(len(chosen), count, -1)
    info["seconds"] += result.seconds
    info["compile_seconds"] += result.compile_seconds
    info["history"] = result.history
  return out, info


def tune(exp, arm: space_lib.Arm, name: str, count: int, group: Seeds, scorer: Scorer, *,
         progress=True, balanced=False) -> dict:
  """Draws ``count`` settings of ``arm`` (``balanced``: see
  :func:`lur_jax.verdict.space.draw`), runs them on ``group`` (on the
  validation split) and picks the lowest mean gap to retraining; a setting
  with a diverged seed is never picked."""
  settings = space_lib.draw(arm.space, count, exp.config.seed, name, balanced)
  values, info = run_settings(exp, arm, settings, group, scorer, progress=progress,
                              desc=f"tune {name}")
  score = scorer.gap(values, group.reference).mean(1)
  score = np.where(np.isfinite(score), score, np.inf)
  best = int(np.argmin(score))
  return {"settings": settings, "val_gap": [None if not np.isfinite(v) else float(v)
                                            for v in score],
          "working": int(np.isfinite(score).sum()),
          "chosen": settings[best] if np.isfinite(score[best]) else None,
          "chosen_val_gap": float(score[best]) if np.isfinite(score[best]) else None,
          "seconds": info["seconds"], "compile_seconds": info["compile_seconds"]}


def alignment_wrap(objective: str, inner_lr: float, inner_steps: int):
  """A ``wrap`` for :func:`lur_jax.audit.ensemble.unlearn` that records
  :func:`lur_jax.core.train.lookahead_alignment` (prefixed ``align_``) at every
  step's parameters, before the update, on the step's own batches."""
  def wrap(step, ctx, settings):
    del settings
    retain, unlearn = ctx.retain(), ctx.forget(objective)

    def measured(state, retain_batch, forget_batch):
      r, f = train.with_keys(state, retain_batch, forget_batch)
      found = train.lookahead_alignment(state.params, r, f, retain, unlearn,
                                        inner_lr=inner_lr, inner_steps=inner_steps)
      new, step_metrics = step(state, retain_batch, forget_batch)
      return new, {**step_metrics, **{f"align_{k}": v for k, v in found.items()}}
    return measured
  return wrap


def settings_of(exp, arm: space_lib.Arm, values: dict) -> methods.Settings:
  """The settings a run of ``arm`` with ``values`` uses: the study's settings of its
  method with the arm's fixed settings and ``values`` laid over them."""
  return exp.settings[arm.method].replace(**{**arm.fixed, **values})


def method_settings(exp, arm: space_lib.Arm, values: dict) -> dict:
  """:func:`settings_of` as a plain dict without the method's name (for the results)."""
  return {k: v for k, v in settings_of(exp, arm, values).items() if k != "name"}


def arm_key(exp, arm: space_lib.Arm) -> dict:
  """What determines an arm's runs: :func:`lur_jax.study.runner.run_key`, the arm,
  and its method's settings that are not drawn (so writing tuned values into
  a config's method sections does not invalidate finished arms)."""
  fixed = {k: v for k, v in method_settings(exp, arm, {}).items() if k not in arm.space}
  return {**runner.run_key(exp), "arm": arm._asdict(), "settings": fixed}
