"""Every method against retraining: digits and Fashion-MNIST, random 10% and class-wise.

    python benchmarks/unlearning_quality.py [--seeds 0,1,2] [--settings ...]

Runs each setting's config (tuned on the validation split by
benchmarks/sweep.py) once per seed on the test split and writes mean ± std of
UA, RA, TA, MIA, Avg Gap, seconds and seconds/retrain to
benchmarks/results/unlearning_quality.json and .md, plus the gradient-conflict
figure of each setting's first seed (diagnostics-<setting>.png). The original
model of a dataset and seed is trained once and shared by its settings.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lur_jax import study  # pylint: disable=g-import-not-at-top
from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top
from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {  # name -> (config, title)
    "digits_random": ("configs/digits.py", "Digits, MLP, random 10%"),
    "digits_class": ("configs/digits_class.py", "Digits, MLP, class-wise (class 0)"),
    "fashion_random": ("configs/fashion_mnist.py", "Fashion-MNIST, CNN, random 10%"),
    "fashion_class": ("configs/fashion_mnist_class.py",
                      "Fashion-MNIST, CNN, class-wise (class 0)"),
}
COLUMNS = ("UA", "RA", "TA", "MIA", "avg_gap", "seconds", "seconds_vs_retrain")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--settings", default=",".join(SETTINGS))
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                    "unlearning_quality"))
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  summary, runs = {}, {}
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as work:
    for setting in args.settings.split(","):
      path, _ = SETTINGS[setting]
      per_seed = []
      for seed in seeds:
        config = config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, path)),
                                            [f"seed={seed}"])
        out = os.path.join(work, setting.split("_")[0])  # originals shared across settings
        results = study.run(config, out, progress=False, log=lambda _: None)
        per_seed.append(results)
        if seed == seeds[0] and os.path.exists(os.path.join(out, "diagnostics.png")):
          shutil.copy(os.path.join(out, "diagnostics.png"),
                      os.path.join(os.path.dirname(args.out), f"diagnostics-{setting}.png"))
        print(f"{setting} seed {seed} done ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
      runs[setting] = per_seed
      summary[setting] = {}
      for name in ["original", *per_seed[0]["methods"]]:
        rows = [r["original"] if name == "original" else r["methods"][name] for r in per_seed]
        summary[setting][name] = {
            k: None if any(row.get(k) is None for row in rows) else
            {"mean": float(np.mean([row[k] for row in rows])),
             "std": float(np.std([row[k] for row in rows]))} for k in COLUMNS}
  lines = [f"Mean ± std over seeds {args.seeds} (`python benchmarks/unlearning_quality.py`, "
           f"device {results['device']}, {time.perf_counter() - start:.0f} s in all).", ""]
  for setting, table in summary.items():
    lines += [f"**{SETTINGS[setting][1]}**", "",
              "| method | UA | RA | TA | MIA | Avg Gap | seconds | × retrain |",
              "|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
      cells = ["-" if row[k] is None else
               (f"{row[k]['mean']:.3f}" if k.startswith("seconds") else
                f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}") for k in COLUMNS]
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
  checkpoint.write_json(args.out + ".json", {
      "seeds": seeds, "device": results["device"], "versions": results["versions"],
      "configs": {s: runs[s][0]["config"] for s in runs}, "summary": summary,
      "wall_seconds": time.perf_counter() - start})
  checkpoint.write_atomic(args.out + ".md", "\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
