"""Data-parallel steps against the single-device step; run by test_parallel.py.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/sharded_check.py [--all]

LUR runs on 1 and 8 devices (with ``--all``: 1, 2, 4 and 8), the other
methods on 8. Without ``--all`` a share of the cases runs on 8 (``SHARE``).

The data-parallel step is the same jitted step, its state replicated and its
batches split over the mesh's ``data`` axis (what :class:`lur_jax.training.steppers.Sharded`
runs on a data-only mesh). Prints one JSON line per (model, method, mode, devices):
the largest relative
difference of any parameter (and BatchNorm statistic) after three steps on
the same global batches (absolute for leaves smaller than ``FLOOR``).
"""

import json
import os
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lur_jax import models
from lur_jax.core import methods, train
from lur_jax.models import diffusion
from lur_jax.study import config as config_lib
from lur_jax.tasks import diffusion as diffusion_task
from lur_jax.training import parallel, sharding, steppers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOBAL_BATCH, FORGET_BATCH, STEPS = 32, 16, 3
# Leaves below this size are compared absolutely: the U-Net's biases just ahead
# of a GroupNorm get mathematically zero gradients, so they hold float noise (~1e-11).
FLOOR = 1e-4


def _model_and_data(name):
  rng = np.random.default_rng(0)
  if name == "mlp":
    shape, kw = (8, 8), {"hidden": (32,)}
  elif name == "cnn":  # with BatchNorm
    shape, kw = (12, 12), {"channels": (4, 8), "hidden": 16, "norm": True}
  else:  # the diffusion U-Net; its objectives draw noise per step
    shape = (8, 8)
  x = rng.random(size=(STEPS, GLOBAL_BATCH + FORGET_BATCH, *shape)).astype(np.float32)
  y = rng.integers(0, 10, size=(STEPS, GLOBAL_BATCH + FORGET_BATCH)).astype(np.int32)
  if name == "unet":
    return diffusion.build_unet(10, shape, channels=(8, 16), emb_dim=16), x, y
  return models.build_model(name, 10, shape, **kw), x, y


def _objectives(model_name):
  if model_name == "unet":
    return diffusion_task.objectives(diffusion.linear_schedule(100), p_uncond=0.1)
  return methods.CLASSIFICATION


def _settings(model_name, method, mode):
  base = "ddpm_digits.py" if model_name == "unet" else "digits.py"
  config = config_lib.load(os.path.join(ROOT, "configs", base))
  return config_lib.method_settings(config, method).replace(
      mode=mode, inner_steps=2, total_steps=STEPS)


def run(model_name, method, mode, devices):
  model, x, y = _model_and_data(model_name)
  key = jax.random.key(0)
  params, model_state = model.init(key), model.init_state(key)
  settings = _settings(model_name, method, mode)
  tx = train.sgd(0.1)
  if methods.METHODS[method].wrap_tx is not None:
    tx = methods.METHODS[method].wrap_tx(settings, tx, STEPS)

  update = None
  if jax.tree.leaves(model_state):
    update = lambda p, s, b: models.update_running_stats(s, model.batch_moments(p, b["x"]))
  ctx = methods.Context(model.apply, 10, model.init, update, _objectives(model_name))
  step = jax.jit(methods.METHODS[method].make_step(ctx, settings, tx))
  state = train.init_state(params, tx, jax.random.key(1), model_state)
  place = lambda tree: tree  # the reference: one device, no collectives
  if devices:
    mesh = sharding.make_mesh(devices=devices)
    state = parallel.put(state, NamedSharding(mesh, P()))
    place = lambda tree: parallel.put(tree, sharding.batch_sharding(mesh))
  for i in range(STEPS):
    retain = place({"x": x[i, :GLOBAL_BATCH], "y": y[i, :GLOBAL_BATCH]})
    forget = place({"x": x[i, GLOBAL_BATCH:], "y": y[i, GLOBAL_BATCH:]})
    state, _ = step(state, retain, forget)
  return steppers.host((state.params, state.model_state))


CASES = ([("mlp", "lur", mode) for mode in ("exact", "hvp", "first_order")]
         + [("cnn", "lur", mode) for mode in ("exact", "hvp", "first_order")]
         + [("cnn", m, "exact") for m in ("rl", "graddiff", "shs", "l1_sparse")]
         + [("unet", "lur", "hvp"), ("unet", "rl", "exact")])
# The default suite's share, on 8 devices: the second-order graph, BatchNorm's global moments
# with labels drawn for the global batch.
SHARE = {("mlp", "lur", "exact"), ("cnn", "rl", "exact")}


def main():
  every = "--all" in sys.argv
  cases = [c for c in CASES if every or c in SHARE]
  for model_name, method, mode in cases:
    reference = run(model_name, method, mode, 0)
    counts = (1, 2, 4, 8) if every else (8,)
    for devices in counts if method == "lur" else (8,):
      got = run(model_name, method, mode, devices)
      diffs = jax.tree.map(
          lambda a, b: float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), FLOOR)),
          got, reference)
      print(json.dumps({"model": model_name, "method": method, "mode": mode,
                        "devices": devices, "max_rel_diff": max(jax.tree.leaves(diffs))}),
            flush=True)


if __name__ == "__main__":
  sys.exit(main())
