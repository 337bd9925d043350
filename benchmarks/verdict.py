"""Does the lookahead help? The verdict over the forgetting settings of docs/verdict.md.

    python benchmarks/verdict.py                             # the five classification settings
    python benchmarks/verdict.py --parts digits_random       # one part alone
    python benchmarks/verdict.py --parts digits_random,digits_random50,digits_class  # digits
    python benchmarks/verdict.py --parts ddpm_digits         # the DDPM, its own budget
    python benchmarks/verdict.py --parts digits_random --seed 1   # a replicate (see --out)
    python benchmarks/verdict.py --parts digits_random --replicates A,B  # side by side

Each part runs ``lur_jax.verdict.run``: every arm (the baselines and the
ablation ladder, each rung with the ``ga`` and the ``rl`` forget objective) gets
the same number of settings drawn from the ranges of ``lur_jax/verdict/space.py``,
tuned on the validation split (mean Avg Gap to the retrain of the same seed),
and the chosen setting runs on other seeds, measured on the test split. The
DDPM part tunes ga, rl, salun, GradDiff and LUR on the samples of two seeds and
scores the winners on four others (``lur_jax/verdict/ddpm.py``).
Writes ``benchmarks/results/verdict/<part>/verdict.{json,md,png}`` (the audit's
files too) and the summary ``benchmarks/results/verdict.md``. A part that was
interrupted resumes from its finished arms (``--work`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax import verdict  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.training import checkpoint, compile_cache  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.verdict import report, space, stats  # pylint: disable=g-import-not-at-top,wrong-import-position

DIGITS = {"settings": 24, "tune_seeds": 3, "final_seeds": 16, "audit_models": 16}
# Fashion-MNIST's CNN runs one member at a time on a CPU (audit.chunk = 1), ~3 s per
# 5-epoch run: a subset of the arms (both objectives, both lookahead orders), 8 final
# seeds, and the audit with 8 runs, the least it allows (50.6 min of its own on 2 cores).
FASHION = {"settings": 12, "tune_seeds": 2, "final_seeds": 8, "mechanism_seeds": 2,
           "audit_models": 8, "arms": "ft,rl,shs,graddiff-ga,graddiff-rl,lur-ga,lur-rl,"
           "lur_forget-ga"}
# Class-wise, every ga-objective arm but GradDiff's failed on digits (Avg Gap 26-57): the
# class part spends the LUR arms on the rl objective, both lookahead orders (no audit:
# it audits random forgetting only).
FASHION_CLASS = {**FASHION, "audit_models": 0,
                 "arms": "graddiff-rl,lur-rl,ft,rl,graddiff-ga,lur_forget-rl,shs"}
# The class-forgetting DDPM: the 12 models trained from scratch (an original and a
# retrain per seed) dominate; 200 + 9 × 50 samples per model (not 500 + 9 × 100)
# keep the sampling short.
DDPM = {"settings": 8, "tune_seeds": 2, "final_seeds": 4, "mechanism_seeds": 0,
        "audit_models": 0, "arms": "graddiff-rl,lur-rl,rl,salun,ga"}
PARTS = {  # name -> (config, overrides, budget)
    "digits_random": ("configs/digits.py", [], DIGITS),
    "digits_random50": ("configs/digits.py", ["forget.fraction=0.5"], DIGITS),
    "digits_class": ("configs/digits.py", ["forget.kind=class"], DIGITS),
    "fashion_random": ("configs/fashion_mnist.py", [], FASHION),
    # The random recipe's 10,000 images (the class recipe's 20,000 double every step).
    "fashion_class": ("configs/fashion_mnist.py", ["forget.kind=class", "data.train_limit=10000"],
                      FASHION_CLASS),
    "ddpm_digits": ("configs/ddpm_digits.py", ["eval.forget_samples=200",
                                               "eval.kept_samples=50"], DDPM),
}
CLASSIFICATION = [p for p in PARTS if not p.startswith("ddpm")]


def _minutes(seconds) -> str:
  return "–" if seconds is None else f"{seconds / 60:.1f}"


def _arm_names(config, budget: dict) -> list[str]:
  spec = budget.get("arms", "")
  every = space.ddpm_arms() if config.get("task") == "diffusion" else space.arms()
  return [a.strip() for a in spec.split(",") if a.strip()] if spec else list(every)


def _load(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _difference(d: dict | None, scale: float = 1.0) -> list[str]:
  """A paired difference's two cells: ``value [low, high]`` and its verdict."""
  if not d or d["low"] is None:
    return ["–", "the same arm" if d is None else "–"]
  return [f"{d['value'] * scale:+.2f} [{d['low'] * scale:+.2f}, {d['high'] * scale:+.2f}]",
          d["verdict"]]


def _summary(parts: dict, results: dict) -> str:
  lines = ["| setting | LUR arm | GradDiff arm | best baseline | LUR − GradDiff (test Avg Gap) | "
           "verdict | LUR − best baseline | verdict | audit: LUR − GradDiff (U-LiRA points; "
           "one audit, interval over its examples) | verdict | minutes from scratch |",
           "|---" * 11 + "|"]
  for name, r in parts.items():
    c = r["compare"]
    audit = results[name].get("audit") or {}
    cells = [*_difference(c.get("lur_minus_graddiff")),
             *_difference(c.get("lur_minus_best_baseline")),
             *(_difference(audit["lur_minus_graddiff"], 100) if "lur_minus_graddiff" in audit
               else ["–", "not audited"])]
    lines.append(" | ".join([f"| {name}", str(c["lur"]), str(c["graddiff"]),
                             str(c["best_baseline"]), *cells,
                             _minutes(r.get("cold_wall_seconds")) + " |"]))
  return "\n".join(lines) + "\n"


def _comparisons(r: dict) -> dict:
  """A part's paired differences by name: the headline ones, the audit's, the ladder."""
  c, audit = r["compare"], r.get("audit") or {}
  return {"LUR − GradDiff": c.get("lur_minus_graddiff"),
          "LUR − best baseline": c.get("lur_minus_best_baseline"),
          "audit: LUR − GradDiff (U-LiRA points)": audit.get("lur_minus_graddiff"),
          **{f"ladder: {n} − {d['reference']}": d for n, d in c.get("ladder", {}).items()},
          **{f"second-order term: {n} − {d['reference']}": d
             for n, d in c.get("second_order", {}).items()}}


def _replicates(dirs: list[str], names: list[str]) -> str:
  """Each part's summary row in every replicate (each dir the ``--out`` of an
  earlier invocation, e.g. with another ``--seed`` or ``--draws``), then per
  part every paired difference side by side and whether its verdicts agree."""
  parts, results, tables = {}, {}, []
  for name in names:
    found = {}
    for d in dirs:
      row = _load(os.path.join(d, "verdict", "summary.json")).get(name)
      if not row:
        continue
      r = json.load(open(os.path.join(d, "verdict", name, "verdict.json")))
      label = f"seed {r['config']['seed']}, {r['verdict'].get('draws', 'independent')} draws"
      if f"{name}, {label}" in parts:  # two folders with the same replicate
        label = f"{label} ({d})"
      parts[f"{name}, {label}"], results[f"{name}, {label}"] = row, r
      for key, diff in _comparisons(r).items():
        if diff and diff.get("low") is not None:
          found.setdefault(key, {})[label] = diff
    if not found:
      continue
    labels = list(dict.fromkeys(lab for f in found.values() for lab in f))
    lines = [f"**{name}**\n", "| comparison | " + " | ".join(labels)
             + " | mean over replicates (95% t-interval over them) | the same verdict in each? |",
             "|---" * (len(labels) + 3) + "|"]
    for key, by in found.items():
      scale = 100 if key.startswith("audit") else 1
      verdicts = {d["verdict"] for d in by.values()}
      cells = [" ".join(_difference(by[lab], scale)) if lab in by else "–" for lab in labels]
      pooled = stats.paired([d["value"] for d in by.values()], np.zeros(len(by)))
      lines.append(f"| {key} | " + " | ".join([*cells, " ".join(_difference(pooled, scale))]) + (
          f" | {verdicts.pop()} |" if len(verdicts) == 1 and len(by) == len(labels) else
          " | no |"))
    tables.append("\n".join(lines) + "\n")
  return _summary(parts, results) + "\n" + "\n".join(tables)


def _arms_table(results: dict) -> str:
  """Every arm's test Avg Gap per setting (the rows of each setting's own table)."""
  names = list(dict.fromkeys(n for r in results.values() for n in r["arms"]))
  lines = ["| arm | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
  for n in names:
    cells = []
    for r in results.values():
      f = r["arms"].get(n, {}).get("final")
      g = f and f["avg_gap"]
      cells.append("–" if not g or g["low"] is None else
                   f"{g['value']:.2f} [{g['low']:.2f}, {g['high']:.2f}]"
                   + (f" ({f['diverged']} diverged)" if f["diverged"] else ""))
    lines.append(f"| {n} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--parts", default=",".join(CLASSIFICATION),
                      help=f"comma-separated, of: {', '.join(PARTS)} (default: the "
                      "classification settings; ddpm_digits has its own budget)")
  parser.add_argument("--out", default="",
                      help="default: benchmarks/results, and benchmarks/results/verdict-"
                      "replicates/seedN-DRAWS for a replicate (--seed, --draws)")
  parser.add_argument("--work", default="",
                      help="where the models and the finished arms are kept (default: "
                      "runs/verdict, runs/verdict-seedN-DRAWS for a replicate)")
  parser.add_argument("--no-progress", action="store_true")
  parser.add_argument("--report", action="store_true",
                      help="only re-render the tables and figures from the results files")
  parser.add_argument("--finished", action="store_true",
                      help="write each part from the arms it has finished under --work, "
                      "without running the others (for a part that was interrupted)")
  parser.add_argument("--seed", type=int, default=None,
                      help="every part's seed (default: its config's): other tuning and final "
                      "seeds, forget sets and drawn settings, a replicate of the whole verdict")
  parser.add_argument("--draws", choices=verdict.DRAWS, default=None,
                      help="how each arm's settings are drawn (default: the part's budget, "
                      "independent); balanced: see lur_jax.verdict.space.draw")
  parser.add_argument("--compilation-cache", default="",
                      help="JAX's compilation cache (default: a fresh folder per invocation, "
                      "so the times are cold; arms that differ only in epochs share programs)")
  parser.add_argument("--replicates", default="",
                      help="comma-separated --out folders of earlier invocations: write "
                      "their rows of --parts side by side (OUT/verdict-replicates/"
                      "replicates.md) and run nothing")
  args = parser.parse_args()
  flags = ("" if args.seed is None else f" --seed {args.seed}") + (
      f" --draws {args.draws}" if args.draws else "")
  replicate = flags.replace(" --seed ", "-seed").replace(" --draws ", "-")
  results_dir = os.path.join(ROOT, "benchmarks", "results")
  args.out = args.out or (os.path.join(results_dir, "verdict-replicates", replicate[1:])
                          if replicate else results_dir)
  args.work = args.work or os.path.join(ROOT, "runs", "verdict" + replicate)
  names = [p.strip() for p in args.parts.split(",") if p.strip()]
  for n in names:
    if n not in PARTS:
      parser.error(f"--parts: unknown part {n!r}; allowed: {', '.join(PARTS)}")
  if args.replicates:
    dirs = [d.strip() for d in args.replicates.split(",") if d.strip()]
    for d in dirs:
      if not os.path.exists(os.path.join(d, "verdict", "summary.json")):
        parser.error(f"--replicates: {d!r} holds no verdict/summary.json; allowed: "
                     "folders given as --out to earlier invocations")
    table = (f"The verdict's rows in each replicate (`python benchmarks/verdict.py --parts "
             f"{','.join(names)} --replicates {','.join(dirs)}`): the same budget and "
             "procedure, another seed or another draw of the settings.\n\n"
             + _replicates(dirs, names))
    checkpoint.write_atomic(os.path.join(args.out, "verdict-replicates", "replicates.md"),
                            table)
    print(table, end="")
    return
  cache = args.compilation_cache or tempfile.mkdtemp(prefix="lur-jax-verdict-cache-")
  compile_cache.enable(cache, warn=lambda msg: print(msg, file=sys.stderr))
  summary_path = os.path.join(args.out, "verdict", "summary.json")
  done = _load(summary_path)
  for name in names if args.report else []:
    dest = os.path.join(args.out, "verdict", name)
    results = json.load(open(os.path.join(dest, "verdict.json")))
    results["compare"] = report.compare(results["arms"])
    results["config_sections"] = report.config_sections(results["arms"], results["compare"])
    report.write(dest, results)
    done[name] = {**done.get(name, {}), "compare": results["compare"]}
  for name in [] if args.report else names:
    path, overrides, budget = PARTS[name]
    overrides = overrides + ([] if args.seed is None else [f"seed={args.seed}"])
    budget = {**budget, **({"draws": args.draws} if args.draws else {})}
    config = config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, path)), overrides)
    work = os.path.join(args.work, name)
    planned = _arm_names(config, budget)
    if args.finished:
      budget = {**budget, "arms": ",".join(
          a for a in planned if os.path.exists(os.path.join(work, "arms", f"{a}.json")))}
    start = time.perf_counter()
    results = verdict.run(config, work, budget, progress=not args.no_progress)
    results["wall_seconds"] = time.perf_counter() - start
    results["command"] = f"python benchmarks/verdict.py --parts {name}{flags}"
    results["arms_not_run"] = [a for a in planned if a not in results["arms"]]
    results["title"] = f"{name}: {path} {' '.join(overrides)}" + (
        f" (not run: {', '.join(results['arms_not_run'])})" if results["arms_not_run"] else "")
    dest = os.path.join(args.out, "verdict", name)
    os.makedirs(dest, exist_ok=True)
    checkpoint.write_json(os.path.join(dest, "verdict.json"), results)
    for f in ("verdict.md", "verdict.png", "audit/audit.md", "audit/audit.png"):
      if os.path.exists(os.path.join(work, f)):
        shutil.copyfile(os.path.join(work, f), os.path.join(dest, os.path.basename(f)))
    done = _load(summary_path)  # another invocation may have finished a part meanwhile
    reused = sum(r.get("reused", False) for r in results["arms"].values())
    results["reused_arms"] = reused
    results["cold_wall_seconds"] = (results["wall_seconds"] if not reused else
                                    done.get(name, {}).get("cold_wall_seconds"))
    done[name] = {k: results[k] for k in ("compare", "wall_seconds", "device", "reused_arms",
                                              "cold_wall_seconds")}
    checkpoint.write_json(summary_path, done)
    print(f"{name}: {results['wall_seconds'] / 60:.1f} min", file=sys.stderr)
  ordered = {n: done[n] for n in PARTS if n in done}
  every = {n: json.load(open(os.path.join(args.out, "verdict", n, "verdict.json")))
           for n in ordered}
  checkpoint.write_atomic(os.path.join(args.out, "verdict.md"), (
      "The verdict (`python benchmarks/verdict.py`); per setting, the arms picked on the "
      "validation split and LUR's paired differences in test Avg Gap (95% intervals over "
      "seeds). Details: `verdict/<setting>/verdict.md`.\n\n" + _summary(ordered, every)
      + "\nEvery arm's test Avg Gap (95% interval over the final seeds):\n\n"
      + _arms_table(every)))
  print(_summary(ordered, every), end="")


if __name__ == "__main__":
  main()
