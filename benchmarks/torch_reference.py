"""The exact LUR step in PyTorch, from the same weights, against lur_jax.

    pip install -e ".[bench]"          # torch==2.13.0, never a library dependency
    python benchmarks/torch_reference.py [--models mlp,cnn,resnet18,transformer] [--quick]

For the MLP (8×8), the CNN (28×28) and ResNet-18 (32×32×3) of lur_jax.models,
initialised by JAX and copied into PyTorch modules of the same architecture:

- agreement: the exact LUR gradient (K=1, lookahead on the retain loss,
  forget objective −CE) from torch.autograd (``create_graph=True``), from
  torch.func, and from lur_jax, all in float64 (float32 rounding alone
  differs by ~1e-3 on deep conv nets); the largest per-leaf relative
  difference is reported;
- time: the float32 exact step (gradient plus SGD update) of PyTorch eager
  (autograd and torch.func) and of lur_jax (jitted, ``mode="exact"`` and
  ``mode="hvp"``, which give the same gradient), timed side by side in this
  process (median of timed steps after warm-up).

And for lur_jax's transformer (``transformer``: 4 blocks of width 256, 4 heads, 128 tokens,
vocabulary 1024, 8 retain + 8 forget sequences, float32; the PyTorch side in
``benchmarks/torch_gpt.py``): GradDiff, ``hvp`` (PyTorch: ``torch.func.jvp`` of
``torch.func.grad``) and ``exact`` (``create_graph=True``), each a gradient and an SGD update,
side by side; agreement in float32 (the transformer computes in float32 whatever its
parameters).

Writes ``benchmarks/results/torch_reference-<device>.{json,md}``.
"""

import argparse
import functools
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_gpt  # pylint: disable=g-import-not-at-top

from lur_jax import models  # pylint: disable=g-import-not-at-top
from lur_jax.core import losses, lur, train  # pylint: disable=g-import-not-at-top
from lur_jax.models import transformer  # pylint: disable=g-import-not-at-top
from lur_jax.study import results  # pylint: disable=g-import-not-at-top
from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"mlp": (8, 8), "cnn": (28, 28), "resnet18": (32, 32, 3)}
BATCH = {"mlp": (256, 128), "cnn": (64, 32), "resnet18": (32, 16)}
TIMED = {"mlp": 30, "cnn": 10, "resnet18": 3}
INNER_LR, FORGET_WEIGHT = 0.1, 0.03


# ---- PyTorch forward passes over a flat {path: tensor} dict of JAX-shaped weights.

def _dense(p, name, x):
  return x @ p[f"{name}/kernel"] + p[f"{name}/bias"]


def _conv(p, name, x, stride=1, padding="same"):
  w = p[f"{name}/kernel"].permute(3, 2, 0, 1)  # HWIO -> OIHW
  b = p.get(f"{name}/bias")
  return F.conv2d(x, w, b, stride=stride, padding=padding)


def _bn(p, name, x):
  mean = x.mean(dim=(0, 2, 3), keepdim=True)
  var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
  scale, bias = p[f"{name}/scale"], p[f"{name}/bias"]
  return (x - mean) * torch.rsqrt(var + 1e-5) * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def mlp(p, x):
  x = x.reshape(x.shape[0], -1)
  i = 0
  while f"hidden_{i}/kernel" in p:
    x = F.relu(_dense(p, f"hidden_{i}", x))
    i += 1
  return _dense(p, "fc", x)


def cnn(p, x):
  x = x[:, None]  # [B, H, W] -> [B, 1, H, W]
  i = 0
  while f"conv_{i}/kernel" in p:
    x = F.avg_pool2d(F.relu(_conv(p, f"conv_{i}", x)), 2)
    i += 1
  x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # flatten in NHWC order, as Flax does
  return _dense(p, "fc", F.relu(_dense(p, "hidden_0", x)))


def resnet18(p, x):
  x = x.permute(0, 3, 1, 2)
  x = F.relu(_bn(p, "stem_bn", _conv(p, "stem", x, padding=1)))
  for i, stride in enumerate([1, 2, 2, 2]):
    for j in range(2):
      name, s = f"layer{i + 1}_{j}", stride if j == 0 else 1
      y = F.relu(_bn(p, f"{name}/bn1", _conv(p, f"{name}/conv1", x, s, 1)))
      y = _bn(p, f"{name}/bn2", _conv(p, f"{name}/conv2", y, 1, 1))
      if f"{name}/shortcut/kernel" in p:
        x = _bn(p, f"{name}/shortcut_bn", _conv(p, f"{name}/shortcut", x, s, 0))
      x = F.relu(x + y)
  return _dense(p, "fc", x.mean(dim=(2, 3)))


FORWARD = {"mlp": mlp, "cnn": cnn, "resnet18": resnet18}


def _flat(params):
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def torch_exact_grads(forward, p, xr, yr, xf, yf):
  """∇J with torch.autograd: one virtual step with create_graph=True."""
  names = list(p)
  retain = F.cross_entropy(forward(p, xr), yr)
  inner = torch.autograd.grad(retain, [p[n] for n in names], create_graph=True)
  ahead = {n: p[n] - INNER_LR * g for n, g in zip(names, inner)}
  objective = retain - FORGET_WEIGHT * F.cross_entropy(forward(ahead, xf), yf)
  return dict(zip(names, torch.autograd.grad(objective, [p[n] for n in names])))


def torch_func_grads(forward, p, xr, yr, xf, yf):
  """∇J with torch.func (grad of a function that takes an inner grad)."""
  def objective(q):
    retain = lambda r: F.cross_entropy(forward(r, xr), yr)
    inner = torch.func.grad(retain)(q)
    ahead = {n: q[n] - INNER_LR * inner[n] for n in q}
    return retain(q) - FORGET_WEIGHT * F.cross_entropy(forward(ahead, xf), yf)
  return torch.func.grad(objective)(p)


def jax_grads(model, params, retain, forget):
  ce = losses.ce_objective(model.apply)
  ga = losses.forget_objective("ga", model.apply, 10)
  return jax.jit(lambda p, r, f: lur.lur_value_and_grad(
      p, r, f, retain_loss_fn=ce, forget_loss_fn=ga, inner_lr=INNER_LR,
      forget_weight=FORGET_WEIGHT, mode="exact")[1])(params, retain, forget)


def _max_rel_diff(a: dict, b: dict) -> float:
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))
                   / max(np.max(np.abs(np.asarray(b[k]))), 1e-300)) for k in b)


def _median_ms(fn, timed):
  for _ in range(2):
    fn()
  times = []
  for _ in range(timed):
    start = time.perf_counter()
    fn()
    times.append(1e3 * (time.perf_counter() - start))
  return statistics.median(times)


def compare(name, quick):
  model = models.build_model(name, 10, SHAPES[name])
  params32 = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  n_r, n_f = BATCH[name]
  xr = rng.normal(size=(n_r, *SHAPES[name])).astype(np.float32)
  xf = rng.normal(size=(n_f, *SHAPES[name])).astype(np.float32)
  yr, yf = rng.integers(0, 10, n_r), rng.integers(0, 10, n_f)
  forward = FORWARD[name]

  # Agreement, float64 (JAX's x64 mode for this block only).
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params32)
    g_jax = jax.tree.map(np.asarray, _flat(jax_grads(
        model, params64, {"x": jnp.asarray(xr, jnp.float64), "y": yr},
        {"x": jnp.asarray(xf, jnp.float64), "y": yf})))
  t64 = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)
  p64 = {k: t64(v).requires_grad_() for k, v in _flat(params64).items()}
  args64 = (t64(xr), torch.tensor(yr), t64(xf), torch.tensor(yf))
  g_autograd = torch_exact_grads(forward, p64, *args64)
  g_func = torch_func_grads(forward, {k: v.detach() for k, v in p64.items()}, *args64)
  record = {"model": name, "batch": [n_r, n_f], "inner_steps": 1,
            "max_rel_diff_autograd_vs_jax": _max_rel_diff(g_autograd, g_jax),
            "max_rel_diff_func_vs_jax": _max_rel_diff(g_func, g_jax)}

  # Time, float32: one exact step (gradient and SGD update) each.
  timed = 1 if quick and name == "resnet18" else TIMED[name]
  t32 = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
  p32 = {k: t32(v).requires_grad_() for k, v in _flat(params32).items()}
  args32 = (t32(xr), torch.tensor(yr), t32(xf), torch.tensor(yf))

  def torch_step(grads_fn, p):
    grads = grads_fn(forward, p, *args32)
    with torch.no_grad():
      for k in p:
        p[k].sub_(0.01 * grads[k])

  record["torch_autograd_ms"] = _median_ms(lambda: torch_step(torch_exact_grads, p32), timed)
  p32f = {k: v.detach().clone() for k, v in p32.items()}
  record["torch_func_ms"] = _median_ms(lambda: torch_step(torch_func_grads, p32f), timed)

  tx = train.sgd(0.01, momentum=0.0, weight_decay=0.0)
  ce = losses.ce_objective(model.apply)
  ga = losses.forget_objective("ga", model.apply, 10)
  retain = {"x": jnp.asarray(xr), "y": jnp.asarray(yr, jnp.int32)}
  forget = {"x": jnp.asarray(xf), "y": jnp.asarray(yf, jnp.int32)}
  for mode in ("exact", "hvp"):  # both give the exact gradient
    step = jax.jit(train.lur_step(tx, retain_loss_fn=ce, forget_loss_fn=ga, inner_lr=INNER_LR,
                                  forget_weight=FORGET_WEIGHT, mode=mode, diagnostics=False),
                   donate_argnums=0)
    state = [train.init_state(jax.tree.map(jnp.copy, params32), tx, jax.random.key(1))]

    def jax_step(step=step, state=state):
      state[0], _ = step(state[0], retain, forget)
      jax.block_until_ready(state[0])

    record[f"jax_{mode}_ms"] = _median_ms(jax_step, timed)
  record["jax_best_ms"] = min(record["jax_exact_ms"], record["jax_hvp_ms"])
  record["jax_speedup_vs_torch_autograd"] = record["torch_autograd_ms"] / record["jax_best_ms"]
  record["timed_steps"] = timed
  return record


GPT = dict(vocab=1024, width=256, depth=4, heads=4, seq_len=128)


def compare_transformer(quick):
  """GradDiff, hvp and exact steps of the transformer: lur_jax against PyTorch eager."""
  model = transformer.Transformer(transformer.TransformerConfig(**GPT))
  rng = np.random.default_rng(0)
  tokens = [rng.integers(0, GPT["vocab"], (8, GPT["seq_len"])) for _ in range(2)]
  params = jax.tree.map(np.asarray, nn.unbox(model.init(
      jax.random.key(0), jnp.asarray(tokens[0], jnp.int32))["params"]))
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  forget_loss = lambda p, b: -loss(p, b)  # GradDiff's; LUR's is the same in _lur_grads
  retain, forget = ({"x": jnp.asarray(t, jnp.int32)} for t in tokens)
  jax_grads = {
      "graddiff": lambda p, r, f: jax.grad(
          lambda q: loss(q, r) + FORGET_WEIGHT * forget_loss(q, f))(p),
      **{mode: functools.partial(_lur_grads, loss, mode) for mode in ("hvp", "exact")}}
  torch_grads = {
      "graddiff": lambda p, r, f: torch_gpt.graddiff_grads(p, r, f, FORGET_WEIGHT),
      "hvp": lambda p, r, f: torch_gpt.hvp_grads(p, r, f, INNER_LR, FORGET_WEIGHT),
      "exact": lambda p, r, f: torch_gpt.exact_grads(p, r, f, INNER_LR, FORGET_WEIGHT)}
  t_tokens = [torch.tensor(t) for t in tokens]
  fresh = lambda: {k: torch.tensor(v).requires_grad_() for k, v in _flat(params).items()}
  record = {"model": "transformer", "shape": GPT, "batch": [8, 8], "inner_steps": 1}
  timed = 3 if quick else 10
  for mode in ("graddiff", "hvp", "exact"):
    got = _flat(jax.jit(jax_grads[mode])(params, retain, forget))
    want = torch_grads[mode](fresh(), *t_tokens)
    record[f"max_rel_diff_{mode}_f32"] = _max_rel_diff(
        {k: np.asarray(v) for k, v in got.items()}, {k: v.detach().numpy() for k, v in want.items()})
    p = fresh()
    def torch_step(p=p, mode=mode):
      grads = torch_grads[mode](p, *t_tokens)
      with torch.no_grad():
        for k in p:
          p[k].sub_(0.01 * grads[k])
    step = jax.jit(lambda p, r, f, mode=mode: jax.tree.map(
        lambda a, g: a - 0.01 * g, p, jax_grads[mode](p, r, f)), donate_argnums=0)
    state = [jax.tree.map(jnp.asarray, params)]
    def jax_step(step=step, state=state):
      state[0] = step(state[0], retain, forget)
      jax.block_until_ready(state[0])
    record[f"torch_{mode}_ms"] = _median_ms(torch_step, timed)
    record[f"jax_{mode}_ms"] = _median_ms(jax_step, timed)
    record[f"jax_speed_vs_torch_{mode}"] = record[f"torch_{mode}_ms"] / record[f"jax_{mode}_ms"]
  record["timed_steps"] = timed
  return record


def _lur_grads(loss, mode, p, r, f):
  return lur.lur_value_and_grad(p, r, f, retain_loss_fn=loss, forget_loss_fn=lambda q, b: -loss(
      q, b), inner_lr=INNER_LR, forget_weight=FORGET_WEIGHT, mode=mode)[1]


def transformer_table(r) -> list[str]:
  lines = ["", f"The transformer ({r['shape']}, {r['batch'][0]} + {r['batch'][1]} sequences, "
           f"float32, median of {r['timed_steps']} steps): speed = PyTorch's time over "
           "lur_jax's (above 1: lur_jax faster).", "",
           "| step | torch ms | lur_jax ms | lur_jax speed | grad diff (f32) |",
           "|---|---|---|---|---|"]
  for mode in ("graddiff", "hvp", "exact"):
    lines.append(f"| {mode} | {r[f'torch_{mode}_ms']:.1f} | {r[f'jax_{mode}_ms']:.1f} | "
                 f"{r[f'jax_speed_vs_torch_{mode}']:.2f}× | {r[f'max_rel_diff_{mode}_f32']:.1e} |")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="mlp,cnn,resnet18,transformer")
  parser.add_argument("--quick", action="store_true", help="one timed ResNet-18 step")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  device = jax.devices()[0]
  tag = f"{device.platform}-{device.device_kind}".replace(" ", "_").lower()
  records = []
  for name in args.models.split(","):
    if name not in (*FORWARD, "transformer"):
      parser.error(f"--models: unknown model {name!r}; allowed: {', '.join(FORWARD)}, "
                   "transformer")
    records.append(compare_transformer(args.quick) if name == "transformer" else
                   compare(name, args.quick))
    print(records[-1], flush=True)
  meta = {"device": results.device_description(), "torch": torch.__version__,
          "torch_threads": torch.get_num_threads(), "versions": results.versions()}
  lines = [f"Exact LUR step, JAX vs PyTorch eager on {meta['device']} (torch {meta['torch']}, "
           f"{meta['torch_threads']} threads), `python benchmarks/torch_reference.py`.", "",
           "| model | batch (r+f) | torch autograd ms | torch.func ms | lur_jax exact ms | "
           "lur_jax hvp ms | lur_jax speed-up (best) | grad diff autograd (f64) | "
           "grad diff torch.func (f64) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in (r for r in records if r["model"] != "transformer"):
    lines.append(f"| {r['model']} | {r['batch'][0]}+{r['batch'][1]} | "
                 f"{r['torch_autograd_ms']:.2f} | {r['torch_func_ms']:.2f} | "
                 f"{r['jax_exact_ms']:.2f} | {r['jax_hvp_ms']:.2f} | "
                 f"{r['jax_speedup_vs_torch_autograd']:.2f}× | "
                 f"{r['max_rel_diff_autograd_vs_jax']:.1e} | {r['max_rel_diff_func_vs_jax']:.1e} |")
  for r in (r for r in records if r["model"] == "transformer"):
    lines += transformer_table(r)
  base = os.path.join(args.out, f"torch_reference-{tag}")
  checkpoint.write_json(base + ".json", {**meta, "records": records})
  checkpoint.write_atomic(base + ".md", "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
