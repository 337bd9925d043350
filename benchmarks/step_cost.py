"""What one unlearning step costs: time, compile time, memory and FLOPs per gradient mode.

    python benchmarks/step_cost.py [--quick] [--models mlp,cnn,resnet18]

Modes: ``graddiff`` (∇[L_r − w·L_f], no lookahead: the baseline),
``first_order``, ``exact`` (jax.grad through the lookahead) and ``hvp``
(forward-over-reverse), each one optax SGD step with the LUR settings of
configs/digits.py, diagnostics off. For every model, batch (retain + forget),
K and remat: median and min wall time over timed steps after warm-up
(``block_until_ready``), compile time, peak device memory and FLOPs from the
compiled executable's memory and cost analyses, the process's peak RSS, and
``max_rel_diff``, the largest per-leaf relative difference between the
exact and hvp gradients (float32). Writes
``benchmarks/results/step_cost-<device>.{json,md,png}``.
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lur_jax import models  # pylint: disable=g-import-not-at-top
from lur_jax.core import losses, lur, train  # pylint: disable=g-import-not-at-top
from lur_jax.study import results  # pylint: disable=g-import-not-at-top
from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {  # name -> (input shape, model kwargs, [(retain, forget) batch sizes], timed steps)
    "mlp": ((8, 8), {}, [(64, 32), (256, 128)], 20),
    "cnn": ((28, 28), {}, [(64, 32), (128, 64)], 10),
    "resnet18": ((32, 32, 3), {}, [(32, 16), (64, 32)], 3),
}
MODES = ("graddiff", "first_order", "exact", "hvp")
INNER_LR, FORGET_WEIGHT = 0.1, 0.03


def _problem(name, retain, forget, seed=0):
  shape, kw, _, _ = MODELS[name]
  model = models.build_model(name, 10, shape, **kw)
  params = model.init(jax.random.key(seed))
  rng = np.random.default_rng(seed)
  batch = lambda n: {"x": jnp.asarray(rng.normal(size=(n, *shape)), jnp.float32),
                     "y": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}
  return model, params, batch(retain), batch(forget)


def _objectives(model):
  return losses.ce_objective(model.apply), losses.forget_objective("ga", model.apply, 10)


def make_step(model, mode, inner_steps, remat, tx):
  ce, forget = _objectives(model)
  if mode == "graddiff":
    return train.objective_step(lambda p, r, f: ce(p, r) + FORGET_WEIGHT * forget(p, f), tx)
  return train.lur_step(tx, retain_loss_fn=ce, forget_loss_fn=forget, inner_lr=INNER_LR,
                        inner_steps=inner_steps, forget_weight=FORGET_WEIGHT, mode=mode,
                        remat=remat, diagnostics=False)


def exact_vs_hvp(model, params, retain, forget, inner_steps):
  ce, fo = _objectives(model)
  kw = dict(retain_loss_fn=ce, forget_loss_fn=fo, inner_lr=INNER_LR, inner_steps=inner_steps,
            forget_weight=FORGET_WEIGHT)
  grads = [jax.jit(lambda p, r, f, m=m: lur.lur_value_and_grad(p, r, f, mode=m, **kw)[1])(
      params, retain, forget) for m in ("exact", "hvp")]
  diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))),
                       *grads)
  return max(jax.tree.leaves(diffs))


def _analyses(compiled):
  memory = compiled.memory_analysis()
  peak = None
  if memory is not None:
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
            + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return peak, (cost or {}).get("flops")


def looped(mode, inner_steps, remat) -> bool:
  """Whether lur_jax runs this step's virtual steps as a ``lax.scan`` (remat, K > 1)."""
  return remat and inner_steps > 1 and mode in ("exact", "hvp")


def measure(name, mode, batch, inner_steps, remat, timed):
  model, params, retain, forget = _problem(name, *batch)
  tx = train.sgd(0.01)
  step = make_step(model, mode, inner_steps, remat, tx)
  state = train.init_state(params, tx, jax.random.key(1))
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=0).lower(state, retain, forget).compile()
  compile_s = time.perf_counter() - start
  for _ in range(min(timed, 2)):  # warm-up
    state, _ = compiled(state, retain, forget)
  jax.block_until_ready(state)
  times = []
  for _ in range(timed):
    start = time.perf_counter()
    state, metrics = compiled(state, retain, forget)
    jax.block_until_ready((state, metrics))
    times.append(1e3 * (time.perf_counter() - start))
  peak, flops = _analyses(compiled)
  if looped(mode, inner_steps, remat):
    flops = None  # XLA's cost analysis counts a loop body once, not K times
  return {"model": name, "mode": mode, "inner_steps": inner_steps if mode != "graddiff" else 0,
          "remat": remat, "batch": list(batch), "median_ms": statistics.median(times),
          "min_ms": min(times), "timed_steps": timed, "compile_s": compile_s,
          "peak_bytes": peak, "flops": flops,
          "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def plan(quick, names, full_resnet=False):
  """(model, mode, batch, K, remat, timed) for every measured configuration.

  The full grid is both batch sizes × K ∈ {1, 2, 4} × remat on and off;
  ``quick`` keeps the first batch, K = 1 and no remat. ResNet-18 gets the full
  grid only with ``full_resnet`` (an accelerator); otherwise the first batch,
  K ∈ {1, 2} without remat (--quick: K = 1, one timed step), to fit a 2-core CPU.
  """
  for name in names:
    _, _, batches, timed = MODELS[name]
    ks, remats = (1, 2, 4), (False, True)
    if quick or (name == "resnet18" and not full_resnet):
      batches, ks, remats = batches[:1], (1,) if quick else (1, 2), (False,)
    if quick and name == "resnet18":
      timed = 1
    for batch in batches:
      yield name, "graddiff", batch, 1, False, timed
      for k in ks:
        for remat in remats:
          for mode in MODES[1:]:
            yield name, mode, batch, k, remat, timed


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a subset: K=1, no remat, one batch")
  parser.add_argument("--models", default="mlp,cnn,resnet18")
  parser.add_argument("--full-resnet", action="store_true",
                      help="the whole grid for ResNet-18 too (for an accelerator)")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  names = args.models.split(",")
  for name in names:
    if name not in MODELS:
      parser.error(f"--models: unknown model {name!r}; allowed: {', '.join(MODELS)}")
  device = jax.devices()[0]
  tag = f"{device.platform}-{device.device_kind}".replace(" ", "_").lower()
  records, diffs = [], {}
  for name, mode, batch, k, remat, timed in plan(args.quick, names, args.full_resnet):
    record = measure(name, mode, batch, k, remat, timed)
    if mode in ("exact", "hvp"):
      key = (name, tuple(batch), k)
      if key not in diffs:
        diffs[key] = exact_vs_hvp(*_problem(name, *batch), k)
      record["max_rel_diff"] = diffs[key]
    else:
      record["max_rel_diff"] = None
    record["device"] = results.device_description()
    records.append(record)
    print(f"{name} {mode} batch={batch} K={record['inner_steps']} remat={remat}: "
          f"{record['median_ms']:.2f} ms (min {record['min_ms']:.2f}), "
          f"compile {record['compile_s']:.1f} s", flush=True)
  base = os.path.join(args.out, f"step_cost-{tag}" + ("-quick" if args.quick else ""))
  meta = {"device": results.device_description(), "quick": args.quick,
          "versions": results.versions(), "cpu": platform.processor() or platform.machine(),
          "cores": os.cpu_count()}
  checkpoint.write_json(base + ".json", {**meta, "records": records})
  checkpoint.write_atomic(base + ".md", table(records, meta))
  plot(records, base + ".png")
  print(table(records, meta))


def _ratio(records, r):
  base = [b for b in records if b["model"] == r["model"] and b["mode"] == "graddiff"
          and b["batch"] == r["batch"]]
  return r["median_ms"] / base[0]["median_ms"] if base else None


def table(records, meta) -> str:
  lines = [f"Step cost on {meta['device']} ({meta['cores']} cores), "
           f"`python benchmarks/step_cost.py{' --quick' if meta['quick'] else ''}`.", "",
           "| model | batch (r+f) | mode | K | remat | median ms | min ms | × graddiff | "
           "compile s | peak MiB | GFLOP | exact vs hvp |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in records:
    ratio = _ratio(records, r)
    cell = lambda v, f: "-" if v is None else format(v, f)
    lines.append(
        f"| {r['model']} | {r['batch'][0]}+{r['batch'][1]} | {r['mode']} | "
        f"{r['inner_steps'] or '-'} | {'yes' if r['remat'] else 'no'} | {r['median_ms']:.2f} | "
        f"{r['min_ms']:.2f} | {cell(ratio, '.2f')} | {r['compile_s']:.1f} | "
        f"{cell(r['peak_bytes'] and r['peak_bytes'] / 2**20, '.1f')} | "
        f"{cell(r['flops'] and r['flops'] / 1e9, '.2f')} | {cell(r['max_rel_diff'], '.1e')} |")
  return "\n".join(lines) + "\n"


def plot(records, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(dict.fromkeys(r["model"] for r in records))
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  width = 0.25
  for j, mode in enumerate(MODES[1:]):
    values = []
    for name in names:
      rows = [r for r in records if r["model"] == name and r["mode"] == mode
              and r["inner_steps"] == 1 and not r["remat"]]
      values.append(_ratio(records, rows[0]) if rows else np.nan)
    left.bar(np.arange(len(names)) + (j - 1) * width, values, width, label=mode)
  left.axhline(2.0, color="k", ls="--", lw=1, label="target 2.0")
  left.set_xticks(np.arange(len(names)), names)
  left.set_ylabel("step time / graddiff step time")
  left.set_title("K = 1, first batch size")
  left.legend()
  for name in names:
    for mode in ("exact", "hvp"):
      for remat in (False, True):
        rows = sorted((r for r in records if r["model"] == name and r["mode"] == mode
                       and r["remat"] == remat and tuple(r["batch"]) == MODELS[name][2][0]),
                      key=lambda r: r["inner_steps"])
        if len(rows) > 1:
          right.plot([r["inner_steps"] for r in rows], [_ratio(records, r) for r in rows],
                     marker="o", label=f"{name} {mode}{' remat' if remat else ''}")
  right.set_xlabel("inner steps K")
  right.set_ylabel("step time / graddiff step time")
  right.set_title("cost against K")
  if right.lines:
    right.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  main()
