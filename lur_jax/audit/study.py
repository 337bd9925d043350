"""The audit: ensembles of originals, retrains and unlearned models, and how
well each method's models can be told from retraining.

:func:`prepare` validates a config (its ``audit`` section) and draws the
assignment (who forgets what); :func:`execute` trains or reuses every ensemble and
scores it; :func:`run` does both. Rows: ``original`` (no unlearning: what the attacks find when
nothing is forgotten), ``retrain`` (a second, independent ensemble of
retrains: the level of two identical distributions at this M) and each
audited method.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from lur_jax import study
from lur_jax.audit import assignment as assignment_lib, scores
from lur_jax.core import methods, train
from lur_jax.study import config as config_lib, ensemble, plots, results as results_lib
from lur_jax.training import cache as cache_lib, checkpoint, steppers

DEFAULTS = {"models": 32, "methods": "", "examples": 0, "chunk": 0, "bootstrap": 1000}
REFERENCE, AGAIN = "retrain", "retrain-again"  # roles of the two retrain ensembles


class Audit(NamedTuple):
  """A validated audit: the study it extends, its settings and its assignment.

  Attributes:
    exp: the prepared study (:class:`~lur_jax.Experiment`).
    settings: the ``audit`` section over its defaults (``models``, ``methods``,
      ``examples``, ``chunk``, ``bootstrap``).
    method_names: the audited methods (retrain excluded: it is the reference).
    assignment: who forgets what: each run's forget set and seeds.
  """

  exp: study.Experiment
  settings: ml_collections.ConfigDict
  method_names: list[str]
  assignment: assignment_lib.Assignment


def settings_of(config) -> ml_collections.ConfigDict:
  """``audit`` settings: the defaults with the config's section laid over them."""
  return ml_collections.ConfigDict({**DEFAULTS, **config.get("audit", {})})


def _check_settings(config, s) -> list[str]:
  unknown = sorted(set(s) - set(DEFAULTS))
  if unknown:
    raise ValueError(f"audit.{unknown[0]}: unknown key; allowed: {', '.join(DEFAULTS)}")
  m = s.models
  if isinstance(m, bool) or not isinstance(m, int) or m < 8 or m % 2:
    raise ValueError(f"audit.models={m!r}; allowed: an even int >= 8 (shadow runs come in "
                     "pairs that split the pool; each example needs 2 runs to fit, 2 to test)")
  for key, low in (("examples", 0), ("chunk", 0), ("bootstrap", 1)):
    if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < low:
      raise ValueError(f"audit.{key}={s[key]!r}; allowed: an int >= {low}")
  if s.chunk and m % s.chunk:
    raise ValueError(f"audit.chunk={s.chunk}; allowed: 0 (all models at once) or a divisor "
                     f"of audit.models={m}")
  if config.get("task", "classification") != "classification":
    raise ValueError(f"task={config.task!r}; allowed for an audit: classification")
  if config.forget.kind != "random":
    raise ValueError(f"forget.kind={config.forget.kind!r}; allowed for an audit: random (the "
                     "shadow runs draw random forget sets)")
  if not 0 < config.forget.fraction <= 0.5:
    raise ValueError(f"forget.fraction={config.forget.fraction!r}; allowed for an audit: "
                     "(0, 0.5] (the pool holds twice the forget set)")
  if jax.process_count() > 1:
    raise ValueError(f"{jax.process_count()} processes; allowed for an audit: one")
  try:
    names = [n for n in methods.parse_methods(s.methods or config.methods) if n != "retrain"]
  except ValueError as e:
    raise ValueError(f"audit.{e}" if s.methods else str(e)) from None
  if not names:
    raise ValueError(f"audit.methods={s.methods!r}; allowed: at least one method besides "
                     "retrain (retrain is always the reference)")
  return names


def prepare(config: ml_collections.ConfigDict) -> Audit:
  """Validates ``config`` and draws the assignment; nothing is trained.

  Args:
    config: a study config with an optional ``audit`` section.

  Returns:
    An :class:`Audit`.

  Raises:
    ValueError: naming the bad value and what is allowed.
  """
  s = settings_of(config)
  names = _check_settings(config, s)
  config = ml_collections.ConfigDict(config.to_dict())
  config.methods = ",".join(["retrain", *names])  # the study checks these methods' settings
  exp = study.prepare(config).only("an audit")
  steppers.check_mesh(exp.mesh, "an audit")
  devices = exp.mesh.size
  for key, size in (("audit.models", s.models), ("audit.chunk", s.chunk)):
    if size and size % devices:
      raise ValueError(f"{key}={size} does not divide over {devices} devices; allowed: a "
                       f"multiple of {devices}")
  if jax.tree.leaves(jax.eval_shape(exp.model.init_state, jax.random.key(0))):
    raise ValueError(f"model.name={config.model.name!r} keeps BatchNorm statistics; allowed "
                     "for an audit: models without BatchNorm (mlp, cnn)")
  n, size = len(exp.splits.train), len(exp.forget.forget)
  if 2 * size > n:
    raise ValueError(f"forget.fraction={config.forget.fraction!r} forgets {size} of {n} "
                     f"examples; allowed for an audit: at most {n // 2} (the pool holds "
                     "twice the forget set)")
  if s.examples > 2 * size:
    raise ValueError(f"audit.examples={s.examples}; allowed: 0 (all) or 1..{2 * size}, the "
                     f"audit pool (twice the forget set of {size}; the training set has {n})")
  p = assignment_lib.make(config.seed, n, exp.forget.forget, s.models, s.examples)
  return Audit(exp, s, names, p)


def run(config: ml_collections.ConfigDict, out_dir: str, *, progress: bool = True,
        log=None) -> dict:
  """Runs the audit and writes ``audit.json``, ``audit.md`` and ``audit.png``.

  A rerun with the same ``out_dir`` reuses every finished ensemble.

  Args:
    config: a study config with an optional ``audit`` section (``lur-jax audit``).
    out_dir: the output folder; created if missing.
    progress: show progress bars.
    log: a one-argument callable for status lines (default: stderr).

  Returns:
    The results dict written to ``audit.json`` (per model: U-LiRA, the
    NeurIPS-2023 score, the study's metrics, seconds).

  Raises:
    ValueError: on a bad config or output folder, before any work.
    lur_jax.training.checkpoint.WriteError: when a write under ``out_dir`` fails.
  """
  audit = prepare(config)
  study.check_out_dir(out_dir)
  return execute(audit, out_dir, progress=progress, log=log)


def _stacked_abstract(exp, models: int):
  one = jax.eval_shape(lambda k: train.Variables(params=exp.model.init(k), model_state={}),
                       jax.random.key(0))
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct((models, *a.shape), a.dtype), one)


def _digest(*arrays) -> str:
  return hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in arrays)).hexdigest()


class _Trainer(NamedTuple):
  audit: Audit
  cache: cache_lib.ModelCache
  log: object
  progress: bool

  def ensemble(self, role: str, method: str, members: ensemble.Members, starts, parent=""):
    """Trains (or reuses) ``role``'s ensemble -> ``(variables, meta)``."""
    exp, k = self.audit.exp, len(members.seeds)
    cfg = exp.config
    key = {"seed": cfg.seed, "data": cfg.data.to_dict(), "model": cfg.model.to_dict(),
           **exp.task.cache_key(cfg), "role": role, "parent": parent,
           "settings": dict(exp.settings[method]),
           "members": _digest(members.seeds, members.retain, members.forget)}

    def make(directory) -> cache_lib.Trained:
      options = config_lib.checkpoint_options(cfg)
      checkpoints = checkpoint.RunCheckpoints(directory, options["keep"], warn=self.log)
      try:
        result = ensemble.unlearn(exp, method, starts(), members, progress=self.progress,
                                  desc=f"{role} ×{k}", chunk=self.audit.settings.chunk,
                                  checkpoints=checkpoints, every=options["every"], log=self.log)
      finally:
        checkpoints.close()
      self.log(f"audit: {role}: {k} models, {result.steps} steps, {result.seconds:.1f} s "
               f"(+{result.compile_seconds:.1f} s compiling)")
      return cache_lib.Trained(train.variables_of(result.state), {
          "seconds": result.seconds, "compile_seconds": result.compile_seconds,
          "steps": result.steps, "diverged": int((result.diverged_at >= 0).sum()),
          "fingerprint_parent": parent})

    cached, reused = self.cache.memoised(f"audit-{role}", key, make, _stacked_abstract(exp, k))
    if reused:
      self.log(f"audit: reusing the {role} ensemble from {cached.directory}")
    return cached.variables, cached.meta



def execute(audit: Audit, out_dir: str, *, progress: bool = True, log=None) -> dict:
  """Runs a prepared :class:`Audit`: :func:`run` after :func:`prepare`.

  Args:
    audit: from :func:`prepare`.
    out_dir, progress, log: as in :func:`run`.

  Returns:
    The results dict written to ``audit.json``.
  """
  log = log or (lambda msg: print(msg, file=sys.stderr))
  exp, p, s = audit.exp, audit.assignment, audit.settings
  warning = config_lib.kind_warning(exp.config)
  if warning:
    log(warning)
  with checkpoint.writing(out_dir):
    os.makedirs(out_dir, exist_ok=True)
  trainer = _Trainer(audit, cache_lib.ModelCache(out_dir, log), log, progress)
  seed = exp.config.seed
  originals = p.originals(seed, len(exp.splits.train))
  original, original_meta = trainer.ensemble("original", "retrain", originals,
                                             lambda: ensemble.fresh(exp.model, originals.seeds))

  def ensemble_of(role, method):
    members = p.members(seed, role)
    if methods.METHODS[method].from_scratch:
      return trainer.ensemble(role, method, members, lambda: ensemble.fresh(exp.model, members.seeds))
    return trainer.ensemble(role, method, members, lambda: jax.tree.map(
        lambda a: np.concatenate([a, a]), original), parent=original_meta["fingerprint"])

  apply = scores.evaluator(exp.model.eval_apply)

  def outputs(variables):
    return scores.outputs(apply, variables, exp.splits.train, exp.forget.test,
                          s.chunk)

  reference, reference_meta = ensemble_of(REFERENCE, "retrain")
  if reference_meta.get("diverged"):
    raise FloatingPointError(f"{reference_meta['diverged']} of the reference retrains "
                             "diverged; the train recipe (train.lr) does not train this model")
  reference_out = outputs(reference)
  fixed, forget, retain = slice(p.models, None), p.forget[p.models], p.retain[p.models]
  reference_summary = scores.summary(scores.Outputs(*(a[fixed] for a in reference_out)),
                                     forget, retain, seed)
  rows = {}
  for role, method in [("original", None), (AGAIN, "retrain"),
                       *((n, n) for n in audit.method_names)]:
    variables, meta = ((original, original_meta) if role == "original"
                       else ensemble_of(role, method))
    name = "retrain" if role == AGAIN else role
    rows[name] = {"seconds": meta["seconds"], "compile_seconds": meta["compile_seconds"],
                  "steps": meta["steps"], "diverged": meta.get("diverged", 0)}
    try:  # finite parameters can still overflow in the logits
      out = None if rows[name]["diverged"] else outputs(variables)
    except FloatingPointError:
      out, rows[name]["diverged"] = None, "some"
    if out is None:
      log(f"audit: {name}: {rows[name]['diverged']} models diverged; not scored")
      continue
    rows[name].update(scores.score(out.twice() if role == "original" else out, reference_out,
                                   reference_summary, p, seed=seed, bootstrap=s.bootstrap))
    log(f"audit: {name}: U-LiRA {100 * rows[name]['ulira']['balanced_accuracy']['value']:.1f}%"
        f", NeurIPS score {rows[name]['neurips']['score']['value']:.3f}")
  results = _results(audit, rows, reference_meta)
  _write(audit, out_dir, results)
  return results


def _results(audit: Audit, rows: dict, reference_meta: dict) -> dict:
  exp, p = audit.exp, audit.assignment
  return {**results_lib.header(exp), "audit": {
      **audit.settings.to_dict(), "methods": ",".join(audit.method_names), "pool": len(p.pool),
      "examples": len(p.audited), "forget_size": int(p.forget.shape[1]),
      "reference_seconds": reference_meta["seconds"]}, "rows": rows}


def markdown_table(results: dict) -> str:
  """The audit's table in Markdown: each row's intervals, ``mean [low, high]``.

  Args:
    results: the dict :func:`run` returns (or ``audit.json`` read back).

  Returns:
    The table, one line per model.
  """
  def cell(d, digits=1, scale=1.0):
    return (f"{d['value'] * scale:.{digits}f} [{d['low'] * scale:.{digits}f}, "
            f"{d['high'] * scale:.{digits}f}]")
  lines = ["| model | U-LiRA acc. % | U-LiRA AUC | exposed % | confidence forgotten / kept | "
           "NeurIPS score | Avg Gap | UA | RA | TA | MIA (SVC) | ensemble s |",
           "|---" * 12 + "|"]
  for name, r in results["rows"].items():
    if r.get("diverged"):
      lines.append(f"| {name} | {r['diverged']} models diverged | | | | | | | | | | "
                   f"{r['seconds']:.1f} |")
      continue
    u, c = r["ulira"], r.get("confidence")  # audits before the confidence column: –
    lines.append(" | ".join([
        f"| {name}", cell(u["balanced_accuracy"], scale=100), cell(u["auc"], 3),
        f"{100 * u['exposed']:.1f}", f"{c['forgotten']:.2f} / {c['kept']:.2f}" if c else "–",
        cell(r["neurips"]["score"], 3), cell(r["avg_gap"], 2),
        *(cell(r[k]) for k in ("UA", "RA", "TA", "MIA")), f"{r['seconds']:.1f} |"]))
  return "\n".join(lines) + "\n"


def _write(audit: Audit, out_dir: str, results: dict) -> None:
  cfg, a = audit.exp.config, results["audit"]
  title = (f"{cfg.data.name}, {cfg.model.name}, {cfg.forget.fraction:.0%} random forgetting, "
           f"{a['models']} runs, {a['examples']} audited examples")
  plots.plot_audit(results["rows"], os.path.join(out_dir, "audit.png"), title)
  checkpoint.write_atomic(os.path.join(out_dir, "audit.md"), markdown_table(results))
  checkpoint.write_json(os.path.join(out_dir, "audit.json"), results)
