"""What the exact second-order step costs in memory: per-device bytes of one step, per mode.

    python benchmarks/memory.py [--sizes 10m,125m,350m,1.3b] [--devices 8] [--quick]
    python benchmarks/memory.py --sizes 10m --seqs 2048,4096 --attention plain,chunked \
        --quick --block-remat on --tag long   # long contexts: the scores' T × T, or not

The transformer of ``lur_jax.models.transformer`` at four sizes, parameters sharded with
``fsdp = devices`` over simulated CPU devices (and on 1 device at the smallest size). Each
variant is one optimiser step (SGD with momentum, state donated) on a retain batch and a forget
batch of ``--batch`` sequences of ``--seq`` tokens each, compiled from abstract shapes, so
nothing is allocated: per-device memory is argument + output + temp − alias from
``compiled.memory_analysis()`` (as MaxText prints it), FLOPs are XLA's cost analysis of the
partitioned program. Variants: a plain gradient step on the retain loss, GradDiff
(∇[L_r − λ L_f]), and LUR ``first_order``, ``hvp`` and ``exact`` at K = 1, 2, 4 (``exact`` also
with LUR's ``remat``), each with and without block rematerialisation. At the smallest size the
steps also run, side by side, for their time relative to GradDiff.

Writes ``benchmarks/results/memory[-<tag>]-<device>.{json,md,png}``.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="10m,125m,350m,1.3b")
  p.add_argument("--devices", type=int, default=8)
  p.add_argument("--seqs", default="256", help="sequence lengths, comma-separated")
  p.add_argument("--attention", default="plain",
                 help="model.attention implementations, comma-separated (plain, chunked, xla)")
  p.add_argument("--chunk", type=int, default=512, help="keys per chunk of chunked attention")
  p.add_argument("--block-remat", default="off,on", help="block remat settings: off,on")
  p.add_argument("--tag", default="", help="results file memory-<tag>-<device>")
  p.add_argument("--batch", type=int, default=16, help="global sequences per batch (each)")
  p.add_argument("--quick", action="store_true", help="K = 1 only, no LUR remat variants")
  p.add_argument("--timed-steps", type=int, default=5, help="0: no timing")
  p.add_argument("--device-peak", action="store_true",
                 help="also run graddiff, hvp and exact at the first size on one device, each in "
                      "a fresh process, for the device's own peak bytes (GPU, TPU)")
  p.add_argument("--peak-of", default="", help=argparse.SUPPRESS)  # the child's mode
  p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # simulated devices must be set before JAX starts
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={ARGS.devices}").strip()
sys.path.insert(0, ROOT)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from lur_jax.core import lur  # noqa: E402
from lur_jax.models import transformer  # noqa: E402
from lur_jax.study import plots, results  # noqa: E402
from lur_jax.training import checkpoint, sharding  # noqa: E402

SIZES = {  # name -> (vocab, width, depth, heads)
    "10m": (16384, 256, 6, 4),
    "125m": (50304, 768, 12, 12),
    "350m": (50304, 1024, 24, 16),
    "1.3b": (50304, 2048, 24, 16),
}
INNER_LR, FORGET_WEIGHT = 0.1, 0.3
GiB = 2.0 ** 30


def variants(quick: bool) -> list[tuple[str, int, bool]]:
  """``(mode, K, LUR remat)``; mode ``grad`` is the plain step, ``graddiff`` the baseline."""
  out = [("grad", 0, False), ("graddiff", 0, False), ("first_order", 1, False)]
  for k in ((1,) if quick else (1, 2, 4)):
    out += [("hvp", k, False), ("exact", k, False)]
    if not quick:
      out.append(("exact", k, True))
  return out


def gradient_fn(mode: str, k: int, remat: bool, loss):
  """``(params, retain, forget) -> grads`` of one variant."""
  forget_loss = lambda p, b: -loss(p, b)  # gradient ascent on the forget batch
  if mode == "grad":
    return lambda p, r, f: jax.grad(loss)(p, r)
  if mode == "graddiff":
    return lambda p, r, f: jax.grad(lambda q: loss(q, r) + FORGET_WEIGHT * forget_loss(q, f))(p)
  return lambda p, r, f: lur.lur_value_and_grad(
      p, r, f, retain_loss_fn=loss, forget_loss_fn=forget_loss, inner_lr=INNER_LR,
      inner_steps=k, forget_weight=FORGET_WEIGHT, mode=mode, remat=remat)[1]


def build(size: str, block_remat: bool, mesh, seq: int, attention: str = "plain",
          chunk: int = 512):
  vocab, width, depth, heads = SIZES[size]
  config = transformer.TransformerConfig(vocab=vocab, width=width, depth=depth, heads=heads,
                                         seq_len=seq, remat="block" if block_remat else "none",
                                         attention=attention, attention_chunk=chunk)
  config.check()
  model = transformer.Transformer(config)
  init = lambda: model.init(jax.random.key(0), jnp.zeros((1, seq), jnp.int32))["params"]
  shardings = sharding.param_shardings(jax.eval_shape(init), mesh)
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  return config, init, shardings, loss


def step_fn(gradients, tx):
  def step(state, retain, forget):
    params, opt_state = state
    updates, opt_state = tx.update(gradients(params, retain, forget), opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return step


def settings(args) -> list[tuple[int, str, bool]]:
  """``(seq, attention, block remat)`` of each measured model."""
  return [(seq, impl, remat == "on") for seq in map(int, args.seqs.split(","))
          for impl in args.attention.split(",") for remat in args.block_remat.split(",")]


def measure(size: str, devices: int, args) -> list[dict]:
  mesh = sharding.make_mesh(fsdp=devices, devices=devices)
  tx = optax.sgd(1e-3, momentum=0.9)
  rows = []
  for seq, impl, block_remat in settings(args):
    batch = {"x": jax.ShapeDtypeStruct((args.batch, seq), jnp.int32,
                                      sharding=sharding.batch_sharding(mesh))}
    config, init, shardings, loss = build(size, block_remat, mesh, seq, impl, args.chunk)
    params = sharding.abstract_sharded(init, shardings)
    opt_state = jax.eval_shape(tx.init, params)
    # The momentum follows the params.
    opt_shardings = optax.tree_map_params(tx, lambda _, s: s, opt_state, shardings,
                                          transform_non_params=lambda _: None)
    state = (params, jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  opt_state, opt_shardings))
    for mode, k, remat in variants(args.quick):
      start = time.time()
      step = jax.jit(step_fn(gradient_fn(mode, k, remat, loss), tx),
                     out_shardings=(shardings, opt_shardings), donate_argnums=0)
      with jax.set_mesh(mesh):  # the activations' constraints resolve against it
        compiled = step.lower(state, batch, batch).compile()
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, list) else cost
      row = {"size": size, "parameters": transformer.parameter_count(config),
             "devices": devices, "seq": seq, "attention": impl,
             "block_remat": block_remat, "mode": mode, "K": k,
             "lur_remat": remat, **sharding.memory_bytes(compiled),
             "flops": float(cost.get("flops", float("nan"))),
             "compile_seconds": time.time() - start}
      rows.append(row)
      print(f"{size} x{devices} T={seq} {impl} block_remat={block_remat} {mode} K={k} "
            f"remat={remat}: "
            f"{row['total'] / GiB:.3f} GiB, {row['flops'] / 1e9:.1f} GFLOP, "
            f"compiled in {row['compile_seconds']:.1f} s", flush=True)
  return rows


def _on_one_device(size: str, args):
  """``(loss, tx, params, retain, forget)`` at ``size`` on one device (the first ``--seqs``
  and ``--attention``, block remat off), the parameters and batches allocated."""
  mesh = sharding.make_mesh(fsdp=1, devices=1)
  seq, impl, _ = settings(args)[0]
  config, init, shardings, loss = build(size, False, mesh, seq, impl, args.chunk)
  params = jax.jit(lambda: nn.unbox(init()), out_shardings=shardings)()
  rng = np.random.default_rng(0)
  put = lambda a: {"x": jax.device_put(a, sharding.batch_sharding(mesh))}
  retain, forget = (put(rng.integers(0, config.vocab, (args.batch, seq), dtype=np.int32))
                    for _ in range(2))
  return loss, optax.sgd(1e-3, momentum=0.9), params, retain, forget


def timed(size: str, args, modes=("grad", "graddiff", "first_order", "hvp", "exact")
          ) -> dict[str, float]:
  """Median seconds per step of each K = 1 variant (of ``modes``) at ``size`` on one device,
  side by side (simulated devices share the CPU's cores, so their times say nothing), at
  the first ``--seqs`` and ``--attention``, block remat off."""
  loss, tx, params, retain, forget = _on_one_device(size, args)
  seconds = {}
  for mode, k, remat in [v for v in variants(True) if v[1] <= 1 and v[0] in modes]:
    step = jax.jit(step_fn(gradient_fn(mode, k, remat, loss), tx))
    state = (params, tx.init(params))
    jax.block_until_ready(step(state, retain, forget))  # compile and warm up
    times = []
    for _ in range(args.timed_steps):
      start = time.time()
      jax.block_until_ready(step(state, retain, forget))
      times.append(time.time() - start)
    seconds[mode] = float(np.median(times))
  return seconds


def _model_key(r) -> tuple:
  return (r["size"], r["devices"], r.get("seq"), r.get("attention"), r["block_remat"])


def table(rows, meta) -> str:
  lines = [f"Per-device memory of one SGD step of the transformer, {meta['device']}, "
           f"{meta['batch']} retain + {meta['batch']} forget sequences per step, "
           "compiled from abstract shapes (`python benchmarks/memory.py`). × GradDiff: the "
           "total over GradDiff's at the same size, devices, sequence, attention and block "
           "remat. GFLOP: XLA's cost "
           "analysis of the per-device program, which counts a loop's body once (the scanned "
           "blocks; LUR's scanned virtual steps when K > 1): not the step's FLOP count.", "",
           "| size | params | devices | T | attention | block remat | mode | K | LUR remat | "
           "total GiB | temp GiB | × GradDiff | GFLOP |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  base = {_model_key(r): r["total"] for r in rows if r["mode"] == "graddiff"}
  for r in rows:
    ratio = r["total"] / base[_model_key(r)]
    lines.append(f"| {r['size']} | {r['parameters'] / 1e6:.0f} M | {r['devices']} | "
                 f"{r.get('seq', meta.get('seq'))} | {r.get('attention', 'plain')} | "
                 f"{'on' if r['block_remat'] else 'off'} | {r['mode']} | {r['K'] or ''} | "
                 f"{'on' if r['lur_remat'] else ''} | {r['total'] / GiB:.3f} | "
                 f"{r['temp'] / GiB:.3f} | {ratio:.2f} | {r['flops'] / 1e9:.1f} |")
  if meta.get("seconds"):
    s = meta["seconds"]
    lines += ["", f"Step time at {meta['timed_size']} on one device of {meta['device']}, median of "
              f"{meta['timed_steps']} steps, relative to GradDiff: " + ", ".join(
                  f"{m} {t / s['graddiff']:.2f}×" for m, t in s.items())]
  if meta.get("device_peak"):
    lines += ["", f"Measured on {meta['device']} (one device, {meta['timed_size']}, block remat off,"
              " each step alone in a fresh process): the device's own peak bytes "
              "(`memory_stats()['peak_bytes_in_use']`) beside the compiled estimate.", "",
              "| mode | device peak GiB | compiled estimate GiB | × GradDiff (peak) |",
              "|---|---|---|---|"]
    peak = meta["device_peak"]
    gib = lambda n: "n/a (the backend keeps none)" if n is None else f"{n / GiB:.3f}"
    for mode, p in peak.items():
      ratio = (f"{p['peak'] / peak['graddiff']['peak']:.2f}" if p["peak"] and
               peak["graddiff"]["peak"] else "")
      lines.append(f"| {mode} | {gib(p['peak'])} | {gib(p['compiled'])} | {ratio} |")
  return "\n".join(lines) + "\n"


def figure(rows, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
  for ax, block_remat in zip(axes, (False, True)):
    sel = [r for r in rows if r["block_remat"] == block_remat and r["devices"] > 1
           and (r.get("seq"), r.get("attention")) == (rows[0].get("seq"), rows[0].get("attention"))]
    base = {r["size"]: r["total"] for r in sel if r["mode"] == "graddiff"}
    for mode, k, remat in sorted({(r["mode"], r["K"], r["lur_remat"]) for r in sel}):
      pts = [(r["parameters"], r["total"] / base[r["size"]]) for r in sel
             if (r["mode"], r["K"], r["lur_remat"]) == (mode, k, remat)]
      label = mode + (f" K={k}" if k else "") + (" remat" if remat else "")
      ax.plot(*zip(*sorted(pts)), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_title(f"block remat {'on' if block_remat else 'off'}")
    ax.set_xlabel("parameters")
  axes[0].set_ylabel("per-device memory ÷ GradDiff's")
  axes[1].legend(fontsize=7, ncol=2)
  fig.tight_layout()
  plots.save_figure(fig, path, dpi=120)


def _peak_in_child(size: str, mode: str) -> dict:
  """One step of ``mode`` at ``size`` in a fresh process (a device's peak never goes down)."""
  argv = [sys.executable, os.path.abspath(__file__), "--sizes", size, "--devices", "1",
          "--seqs", ARGS.seqs.split(",")[0], "--attention", ARGS.attention.split(",")[0],
          "--batch", str(ARGS.batch), "--chunk", str(ARGS.chunk), "--peak-of", mode]
  proc = subprocess.run(argv, capture_output=True, text=True, check=True)
  return json.loads(proc.stdout.splitlines()[-1])


def peak_of(size: str, mode: str, args) -> dict:
  """The child's work: compile, then run one step of ``mode`` (K = 1), and read the device's
  own peak bytes (``None`` where the backend keeps none, as the CPU)."""
  loss, tx, params, retain, forget = _on_one_device(size, args)
  step = jax.jit(step_fn(gradient_fn(mode, 1, False, loss), tx), donate_argnums=0)
  state = (params, tx.init(params))
  compiled = step.lower(state, retain, forget).compile()
  jax.block_until_ready(compiled(state, retain, forget))
  stats = jax.devices()[0].memory_stats() or {}
  return {"peak": stats.get("peak_bytes_in_use"),
          "compiled": sharding.memory_bytes(compiled)["total"]}


def main() -> None:
  args = ARGS
  if args.peak_of:
    print(json.dumps(peak_of(args.sizes.split(",")[0], args.peak_of, args)))
    return
  sizes = args.sizes.split(",")
  for s in sizes:
    if s not in SIZES:
      raise SystemExit(f"--sizes: {s!r}; allowed: {', '.join(SIZES)}")
  start = time.time()
  meta = {"device": results.device_description(), "versions": results.versions(),
          "seqs": args.seqs, "attention": args.attention, "batch": args.batch,
          "quick": args.quick, "timed_size": sizes[0], "timed_steps": args.timed_steps}
  tag = f"-{args.tag}" if args.tag else ""
  stem = os.path.join(args.out,
                      f"memory{tag}-{meta['device'].split(' ')[0].replace(':', '-')}")
  rows = []

  def write():  # after every part, so a long run that is stopped keeps what it measured
    meta["wall_seconds"] = time.time() - start
    checkpoint.write_json(stem + ".json", {**meta, "rows": rows})
    checkpoint.write_atomic(stem + ".md", table(rows, meta))
    figure(rows, stem + ".png")

  parts = [(size, args.devices) for size in sizes] + [(sizes[0], 1)] * (args.devices > 1)
  for size, devices in parts:
    rows += measure(size, devices, args)
    write()
  if args.timed_steps:
    meta["seconds"] = timed(sizes[0], args)
  if args.device_peak:
    meta["device_peak"] = {m: _peak_in_child(sizes[0], m) for m in ("graddiff", "hvp", "exact")}
  write()
  print(table(rows, meta))
  print(f"wall clock {meta['wall_seconds']:.0f} s")


if __name__ == "__main__":
  main()
