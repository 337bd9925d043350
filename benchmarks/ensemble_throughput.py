"""Training and unlearning M models vmapped against the same M one after another.

Both sides run the study's methods on a prepared config: the loop calls
``lur_jax.study.runner.run_method`` once per member (the path ``lur-jax run`` takes),
the ensemble ``lur_jax.study.ensemble.unlearn`` once for all. Each member
has its own init, data order and random forget set of the config's size.
Training is ``retrain`` on all of D from a fresh init (the originals), then
each method unlearns from them.

    python benchmarks/ensemble_throughput.py                      # digits MLP, M = 32
    python benchmarks/ensemble_throughput.py --config configs/fashion_mnist.py --models 8 \\
        --set train.epochs=1 --chunks 0,1,2

Writes ``benchmarks/results/ensemble_throughput-<config>-<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax import study  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib, ensemble, results, runner  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/digits.py")
  parser.add_argument("--models", type=int, default=32)
  parser.add_argument("--methods", default="retrain,graddiff,lur")
  parser.add_argument("--chunks", default="0",
                      help="comma-separated members per call to measure (0 = all at once)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config overrides, as on the command line")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  exp = study.prepare(config_lib.apply_overrides(
      config_lib.load(os.path.join(ROOT, args.config)), args.set)).only()
  members = ensemble.random_members(exp, args.models)
  every = np.tile(np.arange(len(exp.splits.train)), (args.models, 1))
  starts = [runner.initial_variables(exp.model, exp.mesh, seed=i + 1)
            for i in range(args.models)]
  chunks = [int(c) for c in args.chunks.split(",")]
  rows = []
  for name in args.methods.split(","):
    # retrain stands for training the originals: all of D, from a fresh init.
    sets = members._replace(retain=every) if name == "retrain" else members
    row = {"method": name}
    for chunk in chunks:
      together, wall = _timed(lambda name=name, sets=sets, chunk=chunk: ensemble.unlearn(
          exp, name, ensemble.stack(starts), sets, progress=False, chunk=chunk))
      row.update({"steps": together.steps, f"chunk{chunk}_seconds": wall,
                  f"chunk{chunk}_run_seconds": together.seconds})
    alone, wall_alone = _timed(lambda name=name, sets=sets: [runner.run_method(
        exp, runner.recipe(name, exp.settings[name], sets.retain[i], sets.forget[i]), starts[i],
        exp.splits.train, sets.retain[i], sets.forget[i], seed=int(sets.seeds[i]),
        desc=f"member{i}", progress=False) for i in range(args.models)])
    row.update({"loop_seconds": wall_alone,
                "loop_run_seconds": sum(r.seconds for r in alone)})
    for chunk in chunks:
      row[f"chunk{chunk}_speedup"] = row["loop_seconds"] / row[f"chunk{chunk}_seconds"]
      row[f"chunk{chunk}_speedup_excluding_compilation"] = (
          row["loop_run_seconds"] / row[f"chunk{chunk}_run_seconds"])
    rows.append(row)
    print(row, flush=True)
  name = os.path.splitext(os.path.basename(args.config))[0]
  device = results.device_description(exp.mesh)
  record = {"config": args.config, "overrides": args.set, "models": args.models, "device": device,
            "chunks": chunks, "versions": results.versions(), "rows": rows}
  stem = f"ensemble_throughput-{name}-{device.split(' ')[0].replace(':', '-')}"
  checkpoint.write_json(os.path.join(args.out, stem + ".json"), record)
  label = lambda c: "all vmapped" if c == 0 else f"chunk {c}"
  lines = [f"{args.models} models of `{args.config}` {' '.join(args.set)} on {device}: one "
           "after another (the study's `run_method`) against one ensemble "
           "(`lur_jax.study.ensemble.unlearn`; *chunk c*: c members vmapped per call, the "
           "groups in turn). Seconds of running, compilation excluded; × = loop / ensemble; "
           "wall clock with compilation in brackets.", "",
           "| method | steps | loop (s) | " + " | ".join(f"{label(c)} (s) | ×" for c in chunks)
           + " |", "|---|---|---|" + "---|---|" * len(chunks)]
  for r in rows:
    cells = [f"{r[f'chunk{c}_run_seconds']:.1f} ({r[f'chunk{c}_seconds']:.1f}) | "
             f"{r[f'chunk{c}_speedup_excluding_compilation']:.2f} "
             f"({r[f'chunk{c}_speedup']:.2f})" for c in chunks]
    lines.append(f"| {r['method']} | {r['steps']} | {r['loop_run_seconds']:.1f} "
                 f"({r['loop_seconds']:.1f}) | " + " | ".join(cells) + " |")
  checkpoint.write_atomic(os.path.join(args.out, stem + ".md"), "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
