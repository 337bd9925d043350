"""The verdict on language models: does LUR's lookahead help on TOFU?

    python benchmarks/verdict_tofu.py --out runs/verdict_tofu [--seeds 3] [--tune-seeds 1]
        [--lrs 3e-5,1e-4,3e-4] [--arms graddiff,npo,simnpo,lur,lur_npo]
        [--splits forget01,forget05,forget10] [--set key=value ...]

Equal budget: every arm tries the same learning rates (its other settings as in
``configs/tofu.py``) on the validation split (a forget10-sized block of other authors, with
its own retain model), never on the forget splits it is judged on. The rule: the highest
mean forget quality among the rates whose mean model utility is at least 90% of the
validation retain model's (the highest utility when none is). The chosen rate then runs on
each forget split with ``--seeds`` unlearning seeds (the data order; the full model is
shared); forget quality (as log10), model utility and privleak get 95% Student-t intervals,
and LUR's differences to its lookahead-free counterpart (``lur`` − ``graddiff``,
``lur_npo`` − ``npo``) are paired by seed.

Every run is saved as it finishes (``runs.jsonl`` in ``--out``), so an interrupted verdict
resumes. Writes ``benchmarks/results/verdict_tofu.{json,md}``.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lur_jax import study  # noqa: E402
from lur_jax.core import streams  # noqa: E402
from lur_jax.study import config as config_lib, results, runner  # noqa: E402
from lur_jax.training import cache as cache_lib, checkpoint  # noqa: E402
from lur_jax.verdict import stats  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = (("lur", "graddiff"), ("lur_npo", "npo"), ("lur_simnpo", "simnpo"))
KEYS = ("forget_quality", "model_utility", "privleak", "forget_rouge", "retain_rouge")


class Setting:
  """One split's prepared study: the original, the retain model, the measure."""

  def __init__(self, cfg, split, out, log):
    c = config_lib.apply_overrides(cfg, [f"forget.split={split}"])
    (_, self.exp), = study.prepare(c).experiments
    self.cache = cache_lib.ModelCache(out, log, split)
    self.measure, _ = self.exp.task.measurer(self.exp, self.cache, log, False)
    self.original, _, _ = runner.from_scratch(self.exp, self.cache, "original",
                                              np.arange(len(self.exp.splits.train)), log, False)
    retrain, _, _ = runner.from_scratch(self.exp, self.cache, "retrain", self.exp.forget.retain,
                                        log, False)
    self.retrain = self.measure(retrain, "retrain")
    self.retrain.update(self.exp.task.compare(self.retrain, self.retrain))

  def run(self, arm, lr, seed, log):
    exp = self.exp
    retain, forget = exp.forget.retain, exp.forget.forget
    start = time.perf_counter()
    p = runner.recipe(arm, exp.settings[arm].replace(lr=lr), retain, forget)
    result = runner.run_method(exp, p, self.original, exp.splits.train, retain, forget,
                               seed=streams.derive_seed(seed, arm),
                               desc=f"{arm} lr={lr} seed={seed}", progress=False, log=log)
    row = {"seconds": result.seconds, "steps": result.steps}
    if result.first_divergence() is not None:
      return {**row, "diverged": True, **{k: float("nan") for k in KEYS}}
    measured = self.measure({"params": result.state.params,
                             "model_state": result.state.model_state}, arm)
    measured.update(exp.task.compare(measured, self.retrain))
    row.update({k: measured[k] for k in KEYS}, wall=time.perf_counter() - start)
    return row


def _runs(path):
  done = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        r = json.loads(line)
        done[(r["split"], r["arm"], r["lr"], r["seed"])] = r
  return done


def choose(rows, lrs, retain_utility):
  """The rate the rule picks from one arm's validation rows."""
  mean = lambda lr, k: float(np.nanmean([r[k] for r in rows if r["lr"] == lr]))
  admissible = [lr for lr in lrs if mean(lr, "model_utility") >= 0.9 * retain_utility]
  if admissible:
    return max(admissible, key=lambda lr: mean(lr, "forget_quality")), True
  return max(lrs, key=lambda lr: mean(lr, "model_utility")), False


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="where the runs and models go")
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "tofu.py"))
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--tune-seeds", type=int, default=1)
  parser.add_argument("--lrs", default="3e-5,1e-4,3e-4")
  parser.add_argument("--arms", default="graddiff,npo,simnpo,lur,lur_npo")
  parser.add_argument("--splits", default="forget01,forget05,forget10")
  parser.add_argument("--set", action="append", default=[])
  parser.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  cfg = config_lib.apply_overrides(config_lib.load(args.config), args.set)
  lrs = [float(v) for v in args.lrs.split(",")]
  arms = args.arms.split(",")
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "runs.jsonl")
  done = _runs(path)
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  start = time.perf_counter()

  def run(setting, split, arm, lr, seed):
    key = (split, arm, lr, seed)
    if key not in done:
      done[key] = {"split": split, "arm": arm, "lr": lr, "seed": seed,
                   **setting.run(arm, lr, seed, log)}
      with open(path, "a") as f:
        f.write(json.dumps(done[key]) + "\n")
      r = done[key]
      log(f"{split} {arm} lr={lr} seed={seed}: FQ {r['forget_quality']:.2e}, MU "
          f"{r['model_utility']:.3f}, {r.get('wall', 0):.0f} s")
    return done[key]

  val = Setting(cfg, "validation", args.out, log)
  chosen = {}
  for arm in arms:
    rows = [run(val, "validation", arm, lr, 1000 + s) for lr in lrs
            for s in range(args.tune_seeds)]
    chosen[arm] = choose(rows, lrs, val.retrain["model_utility"])
  finals = {}
  for split in args.splits.split(","):
    setting = Setting(cfg, split, args.out, log)
    finals[split] = {"retrain": {k: setting.retrain.get(k) for k in KEYS},
                     "original": None, "arms": {}}
    full = setting.measure(setting.original, "original")
    full.update(setting.exp.task.compare(full, setting.retrain))
    finals[split]["original"] = {k: full[k] for k in KEYS}
    for arm in arms:
      rows = [run(setting, split, arm, chosen[arm][0], s) for s in range(args.seeds)]
      finals[split]["arms"][arm] = rows
  report = {"config": cfg.to_dict(), "lrs": lrs, "seeds": args.seeds,
            "tune_seeds": args.tune_seeds, "validation_retain_utility":
            val.retrain["model_utility"],
            "chosen": {a: {"lr": lr, "admissible": ok} for a, (lr, ok) in chosen.items()},
            "splits": {}, "device": results.device_description(),
            "versions": results.versions(), "seconds": time.perf_counter() - start}
  lines = [f"LUR on TOFU-style data (`python benchmarks/verdict_tofu.py`), {args.seeds} seeds "
           f"per split, rates {lrs} chosen on the validation authors ({args.tune_seeds} "
           f"seed(s) each); {report['device']}. Mean [95% interval].", "",
           "Chosen rates: " + ", ".join(
               f"{a} {lr:g}{'' if ok else ' (none kept 90% utility: the most useful)'}"
               for a, (lr, ok) in chosen.items()), ""]
  cell = lambda i: ("-" if i["value"] is None else f"{i['value']:.3f}" if i["low"] is None
                    else f"{i['value']:.3f} [{i['low']:.3f}, {i['high']:.3f}]")
  for split, f in finals.items():
    summary = {}
    lines += [f"### {split}", "", "| method | log10 forget quality | model utility | privleak "
              "| forget ROUGE-L | retain ROUGE-L |", "|---|---|---|---|---|---|"]
    for name in ("original", "retrain"):
      r = f[name]
      lines.append(f"| {name} | {np.log10(max(r['forget_quality'], 1e-300)):.2f} | "
                   f"{r['model_utility']:.3f} | {r['privleak']:.1f} | {r['forget_rouge']:.3f} | "
                   f"{r['retain_rouge']:.3f} |")
    for arm, rows in f["arms"].items():
      values = {k: [r[k] for r in rows] for k in KEYS}
      values["log_fq"] = list(np.log10(np.maximum(values["forget_quality"], 1e-300)))
      summary[arm] = {k: stats.interval(v) for k, v in values.items()}
      s = summary[arm]
      lines.append(f"| {arm} | {cell(s['log_fq'])} | {cell(s['model_utility'])} | "
                   f"{cell(s['privleak'])} | {cell(s['forget_rouge'])} | "
                   f"{cell(s['retain_rouge'])} |")
    paired = {}
    for a, b in PAIRS:
      if a in f["arms"] and b in f["arms"]:
        la = np.log10(np.maximum([r["forget_quality"] for r in f["arms"][a]], 1e-300))
        lb = np.log10(np.maximum([r["forget_quality"] for r in f["arms"][b]], 1e-300))
        mu = [np.asarray([r["model_utility"] for r in f["arms"][x]]) for x in (a, b)]
        # higher is better for both: the verdict of b − a, lower meaning a is better
        paired[f"{a} - {b}"] = {"log_fq": stats.paired(lb, la),
                                "model_utility": stats.paired(mu[1], mu[0])}
    lines.append("")
    for name, p in paired.items():
      fq, mu = p["log_fq"], p["model_utility"]
      lines.append(f"- {name}: log10 forget quality {-fq['value']:+.2f} "
                   f"[{-fq['high']:+.2f}, {-fq['low']:+.2f}] ({fq['verdict']}); model utility "
                   f"{-mu['value']:+.3f} [{-mu['high']:+.3f}, {-mu['low']:+.3f}] "
                   f"({mu['verdict']})" if fq["low"] is not None else f"- {name}: too few seeds")
    lines.append("")
    report["splits"][split] = {**f, "summary": summary, "paired": paired}
  base = os.path.join(args.results, "verdict_tofu")
  checkpoint.write_json(base + ".json", report)
  checkpoint.write_atomic(base + ".md", "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
