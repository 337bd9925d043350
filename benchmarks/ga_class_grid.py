"""Does gradient ascent have a working setting for class-wise forgetting?

    python benchmarks/ga_class_grid.py                         # digits class 0
    python benchmarks/ga_class_grid.py --setting ddpm_digits   # the class-forgetting DDPM

The verdict's GA arm found none (every draw barely forgot or collapsed). This
grid is denser where the two meet, each setting on the verdict's tuning seeds,
scored like the verdict (digits: the validation split; the DDPM: the samples
of its two tuning seeds). Digits: lr on 8 log-spaced values in [1e-3, 2e-2] ×
epochs {5, 10, 20}, 3 seeds; the DDPM: 6 values in [4e-5, 2.5e-4] × {5, 10,
20}, 2 seeds. Writes benchmarks/results/ga_class_grid{,_ddpm_digits}.{json,md}.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax import study  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.audit import scores  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib, results  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.training import cache as cache_lib, checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.verdict import ddpm, space, tune  # pylint: disable=g-import-not-at-top,wrong-import-position

# setting -> (config, overrides, tuning seeds, learning rates, epochs, results name)
GRIDS = {
    "digits_class": ("configs/digits.py", ["forget.kind=class", "eval.split=val"], 3,
                     np.geomspace(1e-3, 2e-2, 8), (5, 10, 20), "ga_class_grid"),
    "ddpm_digits": ("configs/ddpm_digits.py", ["eval.forget_samples=200", "eval.kept_samples=50"],
                    2, np.geomspace(4e-5, 2.5e-4, 6), (5, 10, 20), "ga_class_grid_ddpm_digits"),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--setting", default="digits_class", choices=list(GRIDS))
  parser.add_argument("--work", default="",
                      help="a verdict part's folder (runs/verdict/<setting>) to reuse its tuning "
                      "seeds and judge; default: a fresh one under runs/")
  args = parser.parse_args()
  path, overrides, seeds, lrs, epochs, name = GRIDS[args.setting]
  exp = study.prepare(config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, path)),
                                                 overrides)).only()
  cache = cache_lib.ModelCache(args.work or os.path.join(ROOT, "runs", "ga_grid", args.setting))
  if args.setting == "ddpm_digits":
    scorer, arm = ddpm.scorer(exp, cache, print, False, 1), space.ddpm_arms()["ga"]
  else:
    scorer = tune.classification_scorer(exp, scores.evaluator(exp.model.eval_apply))
    arm = space.arms()["ga"]
  group = tune.seeds_group(exp, seeds, "verdict-tune", scorer, cache=cache, progress=False)
  settings = [{"lr": float(lr), "epochs": e} for e in epochs for lr in lrs]
  values, _ = tune.run_settings(exp, arm, settings, group, scorer, progress=False)
  gap = scorer.gap(values, group.reference).mean(1)
  lines = ["| epochs | lr | " + " | ".join(scorer.names) + " | val gap |",
           "|---" * (len(scorer.names) + 3) + "|",
           "| retrain | | " + " | ".join(f"{v:.1f}" for v in group.reference.mean(0)) + " | 0 |"]
  for s, v, g in zip(settings, values.mean(1), gap):
    cells = (["diverged"] * len(v) + ["–"] if np.isnan(g) else
             [f"{x:.1f}" for x in v] + [f"{g:.2f}"])
    lines.append(f"| {s['epochs']} | {s['lr']:.3g} | " + " | ".join(cells) + " |")
  table = "\n".join(lines) + "\n"
  out = os.path.join(ROOT, "benchmarks", "results")
  checkpoint.write_json(os.path.join(out, f"{name}.json"), {
      **results.header(exp), "settings": settings, "metrics": values.tolist(),
      "names": list(scorer.names), "val_gap": [None if np.isnan(g) else float(g) for g in gap]})
  checkpoint.write_atomic(os.path.join(out, f"{name}.md"), table)
  print(table, end="")


if __name__ == "__main__":
  main()
