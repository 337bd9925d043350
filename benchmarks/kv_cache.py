"""Greedy generation with the decoder's key-value cache against the cacheless decoding.

    python benchmarks/kv_cache.py [--new 200] [--batch 8] [--prompt 32] [--width 256] [--depth 4]

A randomly initialised Llama-shaped decoder (grouped-query attention) continues ``batch``
prompts of different lengths by ``new`` tokens both ways, in one process: the tokens must be
equal, and the wall time of each (median of 3 runs, compilation excluded) gives the speed-up.
Writes ``benchmarks/results/kv_cache-<device>.json`` and ``.md``.
"""

import argparse
import os
import platform
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from lur_jax.lm import evaluate  # noqa: E402
from lur_jax.models import decoder, hf  # noqa: E402
from lur_jax.study import results  # noqa: E402
from lur_jax.training import checkpoint  # noqa: E402


def _timed(fn, repeats=3):
  out = jax.block_until_ready(fn())  # compiles
  walls = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    walls.append(time.perf_counter() - start)
  return np.asarray(out), float(np.median(walls))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  for name, default in (("new", 200), ("batch", 8), ("prompt", 32), ("width", 256),
                        ("depth", 4)):
    parser.add_argument(f"--{name}", type=int, default=default)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  w = args.width
  config = decoder.DecoderConfig("llama", 1024, w, args.depth, w // 32, w // 64, 32, 4 * w, 1e-5,
                                 args.prompt + args.new, model_type="llama")
  model = hf.as_model(config)
  params = jax.jit(model.init)(jax.random.key(0))
  rng = np.random.default_rng(0)
  prompts = np.zeros((args.batch, args.prompt + args.new), np.int32)
  prompts[:, :args.prompt] = rng.integers(0, config.vocab, (args.batch, args.prompt))
  lengths = rng.integers(args.prompt // 2, args.prompt + 1, args.batch)
  cached = jax.jit(lambda p: decoder.greedy(config, p, prompts, lengths, args.new, eos=-1))
  with_cache, t_cache = _timed(lambda: cached(params))
  without, t_plain = _timed(lambda: evaluate.greedy(model.apply, params, prompts, lengths,
                                                    args.new, eos=-1))
  record = {"config": vars(args), "parameters": sum(a.size for a in jax.tree.leaves(params)),
            "equal_tokens": bool((with_cache == without).all()), "cached_s": t_cache,
            "uncached_s": t_plain, "speedup": t_plain / t_cache,
            "device": results.device_description(), "versions": results.versions(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
  device = jax.devices()[0]
  tag = f"{device.platform}-{device.device_kind}".replace(" ", "_").lower()
  base = os.path.join(args.out, f"kv_cache-{tag}")
  checkpoint.write_json(base + ".json", record)
  table = ("| new tokens | batch | parameters | uncached | cached | speed-up | same tokens |\n"
           "|---|---|---|---|---|---|---|\n"
           f"| {args.new} | {args.batch} | {record['parameters']:,} | {t_plain:.2f} s | "
           f"{t_cache:.2f} s | {record['speedup']:.1f}× | {record['equal_tokens']} |\n")
  checkpoint.write_atomic(base + ".md", f"Greedy generation on {record['device']} "
                          f"({record['cpu']}, {record['cores']} cores), compile excluded, "
                          "median of 3.\n\n" + table)
  print(table)


if __name__ == "__main__":
  main()
