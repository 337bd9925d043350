"""A full audit from an empty output folder, timed, its files kept as results.

    python benchmarks/audit.py                                   # digits MLP, M = 32
    python benchmarks/audit.py --config configs/fashion_mnist.py # Fashion-MNIST CNN, M = 16

Runs ``lur_jax.audit.run`` (what ``lur-jax audit`` runs) into a fresh
temporary folder and copies ``audit.json`` (with the wall clock added),
``audit.md`` and ``audit.png`` to
``benchmarks/results/audit-<config>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax.audit import study as audit  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/digits.py")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config overrides, as on the command line")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  config = config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, args.config)),
                                      args.set)
  name = os.path.splitext(os.path.basename(args.config))[0]
  with tempfile.TemporaryDirectory(prefix="lur-jax-audit-") as work:
    start = time.perf_counter()
    results = audit.run(config, work, progress=True)
    seconds = time.perf_counter() - start
    results["wall_seconds"] = seconds
    results["command"] = " ".join(["python benchmarks/audit.py", *sys.argv[1:]])
    stem = os.path.join(args.out, f"audit-{name}")
    checkpoint.write_json(stem + ".json", results)
    table = audit.markdown_table(results)
    checkpoint.write_atomic(stem + ".md", (
        f"`{results['command']}` on {results['device']}: M = {results['audit']['models']} "
        f"runs, {results['audit']['examples']} audited examples, {seconds / 60:.1f} min from an "
        "empty folder. Means with 95% intervals.\n\n" + table))
    shutil.copyfile(os.path.join(work, "audit.png"), stem + ".png")
  print(table, end="")
  print(f"{seconds:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
  main()
