"""The README's digits table: every method, 3 seeds, random 10% and class-wise.

    python benchmarks/digits_table.py [--seeds 0,1,2]

Runs configs/digits.py and configs/digits_class.py (tuned on the validation
split by benchmarks/sweep_digits.py) once per seed on the test split and
writes mean ± std to benchmarks/results/digits.json and digits.md.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lur_jax import checkpoint, config as config_lib, experiment  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"random 10%": "configs/digits.py", "class-wise (class 0)": "configs/digits_class.py"}
COLUMNS = ("UA", "RA", "TA", "MIA", "avg_gap", "seconds", "seconds_vs_retrain")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "digits"))
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  summary, runs = {}, {}
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as work:
    for setting, path in SETTINGS.items():
      per_seed = []
      for seed in seeds:
        config = config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, path)),
                                            [f"seed={seed}"])
        results = experiment.run(config, os.path.join(work, f"{setting}-{seed}"),
                                 progress=False, log=lambda _: None)
        per_seed.append(results)
        print(f"{setting} seed {seed} done", file=sys.stderr, flush=True)
      runs[setting] = per_seed
      summary[setting] = {}
      for name in ["original", *per_seed[0]["methods"]]:
        rows = [r["original"] if name == "original" else r["methods"][name] for r in per_seed]
        summary[setting][name] = {
            k: None if any(row.get(k) is None for row in rows) else
            {"mean": float(np.mean([row[k] for row in rows])),
             "std": float(np.std([row[k] for row in rows]))} for k in COLUMNS}
  lines = [f"Digits, MLP, mean ± std over seeds {args.seeds} "
           f"(`python benchmarks/digits_table.py`, device {results['device']}).", ""]
  for setting, table in summary.items():
    lines += [f"**{setting}**", "",
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
