"""Does gradient ascent have a working setting for class-wise forgetting?

    python benchmarks/ga_class_grid.py

The verdict's GA arm found none on digits class 0 (every draw barely forgot
or collapsed). This grid is denser where the two meet: lr on 8 log-spaced
values in [1e-3, 2e-2] × epochs {5, 10, 20}, each on the verdict's 3 tuning
seeds, measured on the validation split like the verdict. Writes
benchmarks/results/ga_class_grid.{json,md}.
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax import checkpoint, config as config_lib, results, study  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.audit import scores  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.verdict import space, tune  # pylint: disable=g-import-not-at-top,wrong-import-position


def main() -> None:
  config = config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, "configs", "digits.py")),
                                      ["forget.kind=class", "eval.split=val"])
  exp = study.prepare(config)
  scorer = tune.classification_scorer(exp, scores.evaluator(exp.model.eval_apply))
  group = tune.seeds_group(exp, 3, "verdict-tune", scorer, progress=False)
  settings = [{"lr": float(lr), "epochs": e} for e in (5, 10, 20)
              for lr in np.geomspace(1e-3, 2e-2, 8)]
  values, _ = tune.run_settings(exp, space.arms()["ga"], settings, group, scorer, progress=False)
  gap = scorer.gap(values, group.reference).mean(1)
  lines = ["| epochs | lr | UA | RA | TA | MIA | val Avg Gap |", "|---" * 7 + "|",
           "| retrain | | " + " | ".join(f"{v:.1f}" for v in group.reference.mean(0)) + " | 0 |"]
  for s, v, g in zip(settings, values.mean(1), gap):
    cells = ["diverged"] * 4 + ["–"] if np.isnan(g) else [f"{x:.1f}" for x in v] + [f"{g:.2f}"]
    lines.append(f"| {s['epochs']} | {s['lr']:.4f} | " + " | ".join(cells) + " |")
  table = "\n".join(lines) + "\n"
  out = os.path.join(ROOT, "benchmarks", "results")
  checkpoint.write_json(os.path.join(out, "ga_class_grid.json"), {
      **results.header(exp), "settings": settings, "metrics": values.tolist(),
      "val_gap": [None if np.isnan(g) else float(g) for g in gap]})
  checkpoint.write_atomic(os.path.join(out, "ga_class_grid.md"), table)
  print(table, end="")


if __name__ == "__main__":
  main()
