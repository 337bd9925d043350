"""What the persistent compilation cache saves on a rerun, side by side.

Runs the same study three times as separate processes, each into an empty
``--out`` (so no model is reused): with the cache off, with an empty cache
(the first run, which fills it), and again with the filled cache.

    python benchmarks/compile_cache.py                       # configs/digits.py
    python benchmarks/compile_cache.py --config configs/digits_class.py

Writes ``benchmarks/results/compile_cache-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax.study import results  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position


def _run(config: str, out: str, cache: str) -> float:
  env = {**os.environ, "LUR_JAX_COMPILATION_CACHE": cache}
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "lur_jax", "run", config, "--out", out, "--no-progress"],
                 check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/digits.py")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as work:
    cache = os.path.join(work, "cache")
    seconds = {
        "off": _run(args.config, os.path.join(work, "off"), "off"),
        "empty cache (fills it)": _run(args.config, os.path.join(work, "cold"), cache),
        "filled cache": _run(args.config, os.path.join(work, "warm"), cache),
    }
    entries = len(os.listdir(cache))
  record = {"config": args.config, "device": results.device_description(),
            "versions": results.versions(), "seconds": seconds, "cache_entries": entries,
            "speedup_filled_vs_off": seconds["off"] / seconds["filled cache"]}
  name = f"compile_cache-{record['device'].split(' ')[0].replace(':', '-')}"
  checkpoint.write_json(os.path.join(args.out, name + ".json"), record)
  lines = [f"`lur-jax run {args.config}` into an empty `--out`, three processes one after "
           f"another on {record['device']} (JAX {record['versions']['jax']}):", "",
           "| compilation cache | wall clock (s) |", "|---|---|"]
  lines += [f"| {k} | {v:.1f} |" for k, v in seconds.items()]
  lines += ["", f"Filled cache vs off: {record['speedup_filled_vs_off']:.2f}× faster "
            f"({entries} cached programs)."]
  checkpoint.write_atomic(os.path.join(args.out, name + ".md"), "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
