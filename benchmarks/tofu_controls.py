"""Controls that show the TOFU metrics can fail: a finished ``lur-jax run configs/tofu.py``
study, and a second retain model trained with another seed.

    lur-jax run configs/tofu.py --out runs/tofu
    python benchmarks/tofu_controls.py --study runs/tofu [--split forget10] [--seed 1]

- forget quality of the full model (the study's original) must be tiny (≤ 1e-3): its forget
  truth ratios are far from the retain model's;
- forget quality of a retain model trained with another seed (another init, pretraining and
  data order; the same data) must not be (≥ 0.1): two gold standards look alike;
- the membership attacks' AUC (forget vs holdout authors) of the full model must be far from
  0.5 and that of the second retain model near it.

The second retain model is trained in ``<study>/control-seed<seed>/`` (cached there).
Writes ``benchmarks/results/tofu_controls.{json,md}``.
"""

import argparse
import json
import os
import sys
import time

import ml_collections

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lur_jax import study  # noqa: E402
from lur_jax.lm import metrics  # noqa: E402
from lur_jax.study import results, runner  # noqa: E402
from lur_jax.training import cache as cache_lib, checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "gradnorm", "reference")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", required=True, help="the output folder of the TOFU study")
  parser.add_argument("--split", default="forget10")
  parser.add_argument("--seed", type=int, default=1, help="the second retain model's seed")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  path = os.path.join(args.study, args.split, "results.json")
  if not os.path.isfile(path):
    parser.error(f"--study {args.study!r}: no {args.split}/results.json; allowed: the folder "
                 "of a finished TOFU study with that split")
  with open(path) as f:
    first = json.load(f)
  if "retrain" not in first["methods"]:
    parser.error(f"{path} has no retrain row; allowed: a study that ran retrain")
  cfg = ml_collections.ConfigDict(first["config"])
  cfg.seed, cfg.methods, cfg.forget.split = args.seed, "retrain", args.split
  (_, exp), = study.prepare(cfg).experiments  # the one split
  out = os.path.join(args.study, f"control-seed{args.seed}")
  cache = cache_lib.ModelCache(out, print)
  measure, _ = exp.task.measurer(exp, cache, print, True)
  start = time.perf_counter()
  variables, _, _ = runner.from_scratch(exp, cache, "retrain", exp.forget.retain, print, True)
  second = measure(variables, "retrain")
  seconds = time.perf_counter() - start
  full, retain = first["original"], first["methods"]["retrain"]
  record = {
      "split": args.split, "study": os.path.abspath(args.study), "second_seed": args.seed,
      "full_forget_quality": full["forget_quality"],
      "second_retain_forget_quality": metrics.forget_quality(
          second["forget_truth_ratios"], retain["forget_truth_ratios"]),
      "auc": {a: {"full": full[f"mia_{a}"], "retain": retain[f"mia_{a}"],
                  "second_retain": second[f"mia_{a}"]} for a in ATTACKS},
      "second_retain_row": {k: v for k, v in second.items() if k != "forget_truth_ratios"},
      "seconds": seconds, "device": results.device_description(),
      "versions": results.versions()}
  lines = [f"TOFU controls on {args.split} (`python benchmarks/tofu_controls.py --study "
           f"{args.study}`), {record['device']}, {seconds:.0f} s for the second retain model.",
           "", f"- forget quality of the full model: {record['full_forget_quality']:.2e} "
           "(must be ≤ 1e-3)",
           f"- forget quality of a retain model trained with seed {args.seed} against the "
           f"study's (seed {first['config']['seed']}): "
           f"{record['second_retain_forget_quality']:.3f} (must be ≥ 0.1)", "",
           "| attack | AUC full model | AUC retain model | AUC retain model, seed "
           f"{args.seed} |", "|---|---|---|---|"]
  for a, v in record["auc"].items():
    lines.append(f"| {a} | {v['full']:.3f} | {v['retain']:.3f} | {v['second_retain']:.3f} |")
  os.makedirs(args.out, exist_ok=True)
  base = os.path.join(args.out, "tofu_controls")
  checkpoint.write_json(base + ".json", record)
  checkpoint.write_atomic(base + ".md", "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
