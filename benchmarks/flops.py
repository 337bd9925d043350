"""FLOPs of one step of each LUR mode against its pass-count floor (the transformer, 1 device).

    python benchmarks/flops.py [--sizes 10m,125m] [--seq 256] [--batch 16]

XLA's cost analysis counts a loop's body once, so the transformer is compiled with its layer
scan fully unrolled (``scan_unroll = depth``) and LUR at K = 1 (no loop over virtual steps).
F is the FLOPs of the forward loss on one batch; with a backward pass ≈ 2F, the pass-count
floors count matrix products: a plain gradient 3F; GradDiff 6F (a gradient on each batch);
LUR ``first_order`` 6F (∇L_r(θ), then ∇L_u(θ_1)); ``hvp`` 12F (∇L_u(θ_1), 3F, and the
forward-mode derivative of the retain gradient's program: its primal, ∇L_r(θ) itself, 3F,
and its tangent, two products for each of the program's, 6F); ``exact`` 12F (the forward
program ∇L_r(θ) and L_u(θ_1), 4F, and its reverse: L_u's backward 2F and the gradient
program's, two products for each of its, 6F). Elementwise work (softmax, GELU, LayerNorm and
their second derivatives) is in F but not doubled by the count. Compiled from abstract
shapes; nothing is allocated.

Where the FLOPs go: the optimised program's matrix products (``dot``), parsed from
``compiled.as_text()`` with their shapes and grouped by where they come from (the blocks'
dense layers, the attention's two products, the tied-embedding head), each in units of its own
forward count; what remains of XLA's total is the elementwise work.

Writes ``benchmarks/results/flops-<device>.{json,md}``.
"""

import argparse
import collections
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import memory  # noqa: E402

from lur_jax.models import transformer  # noqa: E402
from lur_jax.study import results  # noqa: E402
from lur_jax.training import checkpoint  # noqa: E402

FLOOR = {"grad": 3, "graddiff": 6, "first_order": 6, "hvp": 12, "exact": 12}


def _flops(fn, *args) -> tuple[float, dict]:
  """XLA's FLOP count of ``fn`` and its matrix products' by origin."""
  compiled = jax.jit(fn).lower(*args).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]), matmul_flops(compiled.as_text())


_LINE = re.compile(r"^(?:ROOT )?%([\w.\-]+) = ([a-z0-9]+\[[0-9,]*\])\S* ([\w\-]+)\((.*)$")


def _dims(shape: str) -> list[int]:
  return [int(d) for d in shape[shape.index("[") + 1:-1].split(",") if d]


def matmul_flops(hlo: str) -> dict[str, float]:
  """2·M·N·K of every ``dot`` of an optimised HLO module, by origin (from its op name):
  ``head`` (the tied embedding's ``attend``), ``attention`` (the scores and the weighted
  values) and ``dense`` (the rest: the blocks' projections and MLP)."""
  out = collections.Counter()
  for block in re.split(r"\n(?=\S)", hlo):
    shapes = {}
    for line in block.splitlines()[1:]:
      m = _LINE.match(line.strip())
      if not m:
        continue
      name, shape, op, rest = m.groups()
      shapes[name] = shape
      if op != "dot":
        continue
      lhs = _dims(shapes[re.match(r"%([\w.\-]+)", rest)[1]])
      contracting = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", rest)[1]
      k = 1
      for d in filter(None, contracting.split(",")):
        k *= lhs[int(d)]
      n = 1
      for d in _dims(shape):
        n *= d
      where = re.search(r'op_name="([^"]*)"', rest)
      where = where[1] if where else ""
      origin = ("head" if "attend" in where else
                "attention" if re.search(r"bhg?qk|bqhg?d", rest + where) else "dense")
      out[origin] += 2.0 * n * k
  return dict(out)


def measure(size: str, seq: int, batch: int) -> list[dict]:
  vocab, width, depth, heads = memory.SIZES[size]
  config = transformer.TransformerConfig(vocab=vocab, width=width, depth=depth, heads=heads,
                                         seq_len=seq, scan_unroll=depth)
  model = transformer.Transformer(config)
  params = nn.unbox(jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, seq), jnp.int32))["params"]))
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  tokens = {"x": jax.ShapeDtypeStruct((batch, seq), jnp.int32)}
  forward, forward_mm = _flops(loss, params, tokens)
  rows = []
  for mode in FLOOR:
    start = time.time()
    k = 0 if mode in ("grad", "graddiff") else 1
    grads = memory.gradient_fn(mode, k, False, loss)
    flops, mm = _flops(grads, params, tokens, tokens)
    rows.append({"size": size, "parameters": transformer.parameter_count(config), "mode": mode,
                 "forward_flops": forward, "flops": flops, "passes": flops / forward,
                 "floor": FLOOR[mode], "compile_seconds": time.time() - start,
                 "matmul_passes": {k: v / forward_mm[k] for k, v in mm.items()},
                 "elementwise_share": 1 - sum(mm.values()) / flops})
    print(f"{size} {mode}: {flops / forward:.2f} F (floor {FLOOR[mode]} F)", flush=True)
  return rows


def table(rows, meta) -> str:
  lines = [f"FLOPs of one step (K = 1) of the transformer on {meta['device']}, {meta['batch']} "
           f"retain + {meta['batch']} forget sequences of {meta['seq']} tokens, in units of F = "
           "the forward loss on one batch (XLA's cost analysis of the unrolled program; "
           "`python benchmarks/flops.py`).", "",
           "Matrix products by origin, each over its own forward count; elementwise: the "
           "share of the step's FLOPs outside matrix products.", "",
           "| size | params | step | FLOPs / F | pass-count floor | within 2% | dense | "
           "attention | head | elementwise |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    mm = r["matmul_passes"]
    lines.append(f"| {r['size']} | {r['parameters'] / 1e6:.0f} M | {r['mode']} | "
                 f"{r['passes']:.2f} | {r['floor']} | "
                 f"{'yes' if r['passes'] <= 1.02 * r['floor'] else 'no'} | "
                 f"{mm.get('dense', 0):.2f} | {mm.get('attention', 0):.2f} | "
                 f"{mm.get('head', 0):.2f} | {100 * r['elementwise_share']:.1f}% |")
  return "\n".join(lines) + "\n"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="10m,125m")
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = p.parse_args()
  start = time.time()
  meta = {"device": results.device_description(), "versions": results.versions(),
          "seq": args.seq, "batch": args.batch}
  rows = [r for size in args.sizes.split(",") for r in measure(size, args.seq, args.batch)]
  meta["wall_seconds"] = time.time() - start
  stem = os.path.join(args.out, f"flops-{meta['device'].split(' ')[0].replace(':', '-')}")
  checkpoint.write_json(stem + ".json", {**meta, "rows": rows})
  checkpoint.write_atomic(stem + ".md", table(rows, meta))
  print(table(rows, meta))
  print(f"wall clock {meta['wall_seconds']:.0f} s")


if __name__ == "__main__":
  main()
