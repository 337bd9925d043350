"""The verdict of one forgetting setting: every arm tuned with the same budget
on the validation split, the winners measured on the test split over many
seeds, LUR's paired differences, the mechanism, and (for random forgetting)
the audit of the headline methods.

Each arm's tuning and its row are saved as soon as they are done
(``arms/<name>.tuning.json``, ``arms/<name>.json``, each with a fingerprint of
what determined it), so an interrupted setting resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np

from lur_jax import study
from lur_jax.audit import scores, study as audit_study
from lur_jax.study import results as results_lib
from lur_jax.training import cache as cache_lib, checkpoint, steppers
from lur_jax.verdict import ddpm, report, space as space_lib, stats, tune

#: The verdict budget's defaults: settings drawn per arm, tuning/final/mechanism seeds,
#: audit models, the arms (empty: all), members per program (−1: all), the draws.
DEFAULTS = {"settings": 24, "tune_seeds": 3, "final_seeds": 16, "mechanism_seeds": 4,
            "audit_models": 16, "arms": "", "chunk": -1, "draws": "independent"}
#: How settings are drawn: independently, or each discrete combination an equal share.
DRAWS = ("independent", "balanced")
TASKS = ("classification", "diffusion")


def settings_of(overrides: dict | None) -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict({**DEFAULTS, **(overrides or {})})
  unknown = sorted(set(s) - set(DEFAULTS))
  if unknown:
    raise ValueError(f"verdict.{unknown[0]}: unknown key; allowed: {', '.join(DEFAULTS)}")
  for key, low in (("settings", 1), ("tune_seeds", 2), ("final_seeds", 2),
                   ("mechanism_seeds", 0), ("audit_models", 0), ("chunk", -1)):
    if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < low:
      raise ValueError(f"verdict.{key}={s[key]!r}; allowed: an int >= {low}")
  if s.draws not in DRAWS:
    raise ValueError(f"verdict.draws={s.draws!r}; allowed: {', '.join(DRAWS)}")
  if s.mechanism_seeds == 1:
    raise ValueError("verdict.mechanism_seeds=1; allowed: 0 (none) or an int >= 2 (an "
                     "ensemble of two models at least)")
  if s.audit_models and (s.audit_models < 8 or s.audit_models % 2):
    raise ValueError(f"verdict.audit_models={s.audit_models}; allowed: 0 (no audit) or an even "
                     "int >= 8 (see audit.models)")
  return s


def selected_arms(spec: str, every: dict[str, space_lib.Arm]) -> dict[str, space_lib.Arm]:
  names = [n.strip() for n in spec.split(",") if n.strip()] or list(every)
  for n in names:
    if n not in every:
      raise ValueError(f"verdict.arms: unknown arm {n!r}; allowed: {', '.join(every)}")
  if not any(every[n].family == "graddiff" for n in names):
    raise ValueError(f"verdict.arms={spec!r}; allowed: a list with a graddiff arm (the "
                     "reference of every paired difference)")
  return {n: every[n] for n in names}


def _split(config, split: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval.split = split
  return config


def run(config, out_dir: str, verdict: dict | None = None, *, progress: bool = True,
        log=None) -> dict:
  """Runs the verdict of ``config``'s forgetting setting into ``out_dir``.

  Args:
    config: a classification config, or a class-forgetting diffusion config
      (its method sections are the starting point only: every arm's settings
      are drawn anew).
    out_dir: output folder (``verdict.json``, ``verdict.md``, ``verdict.png``).
    verdict: budget overrides of :data:`DEFAULTS`: ``settings`` per arm,
      ``tune_seeds``, ``final_seeds``, ``mechanism_seeds``, ``audit_models``
      (0: no audit), ``arms`` (comma-separated, default all), ``chunk``
      (models trained per call; -1: the config's ``audit.chunk``, 1 for a DDPM)
      and ``draws`` (``"balanced"``: each combination of an arm's discrete
      choices gets an equal share of its settings, so its ensembles share one
      compiled program; see :func:`lur_jax.verdict.space.draw`).
    progress: progress bars over each arm's ensembles.
    log: ``str -> None`` for each stage's line (default: print to stderr).

  Returns:
    The verdict as written to ``verdict.json``.

  Raises:
    ValueError: on bad settings, before any work.
  """
  log = log or (lambda msg: print(msg, file=sys.stderr))
  s = settings_of(verdict)
  task = config.get("task", "classification")
  if task not in TASKS:
    raise ValueError(f"task={task!r}; allowed for a verdict: {', '.join(TASKS)}")
  arms = selected_arms(s.arms, space_lib.arms() if task == "classification" else
                       space_lib.ddpm_arms())
  if task == "classification":
    exp_val, exp_test = (study.prepare(_split(config, split)).only("a verdict")
                         for split in ("val", "test"))
  else:  # judged on samples: the tuning seeds are the ones never scored
    exp_val = exp_test = study.prepare(config).only("a verdict")
  steppers.check_mesh(exp_test.mesh, "a verdict")
  if jax.tree.leaves(jax.eval_shape(exp_test.model.init_state, jax.random.key(0))):
    raise ValueError(f"model.name={config.model.name!r} keeps BatchNorm statistics; allowed "
                     "for a verdict: models without BatchNorm (mlp, cnn, unet)")
  study.check_out_dir(out_dir)
  with checkpoint.writing(out_dir):
    os.makedirs(os.path.join(out_dir, "arms"), exist_ok=True)
  models = cache_lib.ModelCache(out_dir, log)
  scorers = _scorers(exp_val, exp_test, s.chunk, models, progress, log)
  groups = {"tune": tune.seeds_group(exp_val, s.tune_seeds, "verdict-tune", scorers["tune"],
                                     cache=models, progress=progress, log=log),
            "final": tune.seeds_group(exp_test, s.final_seeds, "verdict-final",
                                      scorers["final"], cache=models, progress=progress,
                                      log=log)}
  rows = {name: _arm_row(exp_val, exp_test, name, arm, s, groups, scorers, out_dir, progress,
                         log) for name, arm in arms.items()}
  scorer = scorers["final"]
  results = {**results_lib.header(exp_test), "verdict": s.to_dict(), "metrics": scorer.names,
             "spaces": {n: space_lib.describe(a.space) for n, a in arms.items()},
             "reference": {"final": _intervals(scorer, groups["final"].reference)},
             "arms": rows}
  results["compare"] = report.compare(rows)
  results["config_sections"] = report.config_sections(rows, results["compare"])
  if s.mechanism_seeds:
    results["mechanism"] = _mechanism(exp_test, arms, rows, results["compare"], groups, s,
                                      scorer, progress)
  if s.audit_models and config.forget.kind == "random" and (
      2 * len(exp_test.forget.forget) <= len(exp_test.splits.train)):  # the audit's pool fits
    results["audit"] = _audit(config, arms, rows, results["compare"], s, out_dir, progress, log)
  report.write(out_dir, results)
  return results


def _scorers(exp_val, exp_test, chunk: int, models, progress: bool, log) -> dict:
  """``{"tune": scorer, "final": scorer}``: the validation split's and the test
  split's, sharing one jitted evaluator; a DDPM (judged on samples, one
  experiment) has one scorer for both."""
  if exp_val is exp_test:
    one = ddpm.scorer(exp_val, models, log, progress, 1 if chunk < 0 else chunk)
    return {"tune": one, "final": one}
  chunk = exp_val.config.get("audit", {}).get("chunk", 0) if chunk < 0 else chunk
  evaluate = scores.evaluator(exp_val.model.eval_apply)  # one compiled program per size
  return {"tune": tune.classification_scorer(exp_val, evaluate, chunk),
          "final": tune.classification_scorer(exp_test, evaluate, chunk)}


def _intervals(scorer: tune.Scorer, values: np.ndarray) -> dict:
  return {k: stats.interval(values[:, i]) for i, k in enumerate(scorer.names)}


def _draws_key(s) -> list[str]:
  """``["balanced"]`` for balanced draws, else nothing (the fingerprints of arms
  drawn before the choice existed stay valid)."""
  return [s.draws] if s.draws != "independent" else []


def _read_row(path: str, key: str, log) -> dict | None:
  """The JSON at ``path`` when its fingerprint is ``key``."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    row = json.load(f)
  if row.get("fingerprint") != key:
    return None
  log(f"verdict: reusing {path}")
  return row


def _tuning(exp_val, name, arm, s, group, scorer, out_dir, progress, log) -> dict:
  """The arm's tuning on the validation split, kept in ``arms/<name>.tuning.json``
  (a rerun whose final runs changed keeps it)."""
  path = os.path.join(out_dir, "arms", f"{name}.tuning.json")
  key = cache_lib.fingerprint({**tune.arm_key(exp_val, arm),
                               "budget": [s.settings, s.tune_seeds, *_draws_key(s)]})
  tuning = _read_row(path, key, log)
  if tuning is None:
    start = time.perf_counter()
    tuning = tune.tune(exp_val, arm, name, s.settings, group, scorer, progress=progress,
                       balanced=s.draws == "balanced")
    tuning = {**tuning, "wall_seconds": time.perf_counter() - start, "fingerprint": key}
    checkpoint.write_json(path, tuning)
  return {k: v for k, v in tuning.items() if k != "fingerprint"}


def _arm_row(exp_val, exp_test, name, arm, s, groups, scorers, out_dir, progress, log) -> dict:
  key = cache_lib.fingerprint({**tune.arm_key(exp_test, arm),
                               "budget": [s.settings, s.tune_seeds, s.final_seeds,
                                          *_draws_key(s)]})
  path = os.path.join(out_dir, "arms", f"{name}.json")
  row = _read_row(path, key, log)
  if row is not None:
    return {**row, "reused": True}
  tuning = _tuning(exp_val, name, arm, s, groups["tune"], scorers["tune"], out_dir, progress,
                   log)
  row = {"family": arm.family, "method": arm.method, "fixed": arm.fixed, "tuning": tuning,
         "fingerprint": key}
  if tuning["chosen"] is None:
    log(f"verdict: {name}: every one of {s.settings} settings diverged")
    row["final"] = None
  else:
    start, scorer, reference = time.perf_counter(), scorers["final"], groups["final"].reference
    values, info = tune.run_settings(exp_test, arm, [tuning["chosen"]], groups["final"],
                                     scorer, progress=progress, desc=f"final {name}")
    gap = scorer.gap(values[0], reference)
    extra = scorer.extra(values[0], reference) if scorer.extra else {}
    row["settings"] = tune.method_settings(exp_test, arm, tuning["chosen"])
    row["final"] = {"metrics": values[0].tolist(), "gap": gap.tolist(),
                    "avg_gap": stats.interval(gap), **_intervals(scorer, values[0]),
                    **{k: stats.interval(v) for k, v in extra.items()},
                    "diverged": int(np.isnan(gap).sum()), "seconds": info["seconds"],
                    "wall_seconds": time.perf_counter() - start}
    log(f"verdict: {name}: val Avg Gap {tuning['chosen_val_gap']:.2f} "
        f"({tuning['working']}/{s.settings} settings worked), test {np.nanmean(gap):.2f}")
  checkpoint.write_json(path, row)
  return {**row, "reused": False}


def _mechanism(exp, arms, rows, compare, groups, s, scorer, progress) -> dict | None:
  """The alignment LUR optimises, per step, for the headline LUR arm and the
  GradDiff arm with its forget objective, on the same seeds and batches."""
  lur_name = compare.get("lur")
  if lur_name is None:
    return None
  objective = arms[lur_name].fixed["forget_objective"]
  graddiff_name = f"graddiff-{objective}"
  if rows.get(graddiff_name, {}).get("final") is None:
    return None
  chosen = rows[lur_name]["tuning"]["chosen"]
  alpha, k = chosen["inner_lr"], arms[lur_name].fixed["inner_steps"]
  wrap = tune.alignment_wrap(objective, alpha, k)
  g = groups["final"]
  few = tune.Seeds(type(g.members)(*(a[:s.mechanism_seeds] for a in g.members)),
                   {key: _head(v, s.mechanism_seeds) for key, v in g.originals.items()},
                   g.reference[:s.mechanism_seeds])
  curves = {"inner_lr": alpha, "inner_steps": k, "objective": objective}
  for name in (lur_name, graddiff_name):
    _, info = tune.run_settings(exp, arms[name], [rows[name]["tuning"]["chosen"]], few,
                                scorer, wrap=wrap, progress=progress, desc=f"mechanism {name}")
    found = {k[len("align_"):]: v for k, v in info["history"].items() if k.startswith("align_")}
    curves[name] = {k: np.nanmean(v, 1).tolist() for k, v in found.items()}  # per step
    curves[name]["over_run"] = {k: stats.interval(np.nanmean(v, 0)) for k, v in found.items()}
  return curves


def _head(tree, n):
  return jax.tree.map(lambda a: a[:n], tree)


def _audit(config, arms, rows, compare, s, out_dir, progress, log) -> dict | None:
  """The audit (U-LiRA, NeurIPS score) of the headline LUR arm, GradDiff and the
  best baseline, each with its chosen settings."""
  picks = [compare.get(k) for k in ("lur", "graddiff", "best_baseline")]
  picks = list(dict.fromkeys(p for p in picks if p is not None))
  if len({arms[p].method for p in picks}) < len(picks):
    return None
  config = ml_collections.ConfigDict(config.to_dict())
  for p in picks:
    config = tune.with_settings(config, arms[p], rows[p]["tuning"]["chosen"])
  config.audit = ml_collections.ConfigDict({
      **config.get("audit", {}), "models": s.audit_models,
      "methods": ",".join(arms[p].method for p in picks)})
  found = audit_study.run(config, os.path.join(out_dir, "audit"), progress=progress, log=log)
  by_arm = {p: found["rows"][arms[p].method] for p in picks}
  out = {"models": s.audit_models, "rows": {**{p: report.audit_cells(r) for p, r in
                                                by_arm.items()},
                                             "retrain": report.audit_cells(found["rows"]["retrain"]),
                                             "original": report.audit_cells(found["rows"]["original"])}}
  if compare.get("lur") in by_arm and compare.get("graddiff") in by_arm:
    acc = [np.array(by_arm[compare[k]]["ulira"]["per_example_accuracy"], float)
           for k in ("lur", "graddiff")]
    out["lur_minus_graddiff"] = stats.paired_bootstrap(*acc, seed=config.seed)
  return out
