"""Run with 8 (simulated) devices: the LUR gradient of a tiny transformer with its parameters
sharded (fsdp=8; data=2 × fsdp=4; tensor=2 × fsdp=4) against the same gradient on one device.
Prints one JSON line per mesh and mode: the largest difference relative to the largest entry,
and whether every parameter came back with the sharding its rules give. Used by
tests/test_sharding.py; the modes are the arguments (default: all three), ``--mesh NAME``
(repeated) picks meshes of ``MESHES`` (default: all)."""

import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lur_jax.core import lur  # noqa: E402
from lur_jax.models import transformer  # noqa: E402
from lur_jax.training import sharding  # noqa: E402

CONFIG = transformer.TransformerConfig(vocab=64, width=32, depth=2, heads=4, seq_len=16)
MESHES = {"fsdp=8": {"fsdp": 8}, "data=2,fsdp=4": {"data": 2, "fsdp": 4},
          "tensor=2,fsdp=4": {"tensor": 2, "fsdp": 4}}


def main():
  model = transformer.Transformer(CONFIG)
  init = lambda: model.init(jax.random.key(0), jnp.zeros((1, CONFIG.seq_len), jnp.int32))["params"]
  params = nn.unbox(init())
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  rng = np.random.default_rng(0)
  retain = {"x": jnp.asarray(rng.integers(0, CONFIG.vocab, (16, CONFIG.seq_len)), jnp.int32)}
  forget = {"x": jnp.asarray(rng.integers(0, CONFIG.vocab, (8, CONFIG.seq_len)), jnp.int32)}

  def grads(mode):
    return lambda p, r, f: lur.lur_value_and_grad(
        p, r, f, retain_loss_fn=loss, forget_loss_fn=lambda q, b: -loss(q, b), inner_lr=0.1,
        forget_weight=0.3, mode=mode)[1]

  args = sys.argv[1:]
  chosen = [args[i + 1] for i, a in enumerate(args) if a == "--mesh"]
  modes = [a for i, a in enumerate(args) if a != "--mesh" and (i == 0 or args[i - 1] != "--mesh")]
  for mode in modes or ("exact", "hvp", "first_order"):
    alone = jax.jit(grads(mode))(params, retain, forget)
    for name, axes in MESHES.items():
      if chosen and name not in chosen:
        continue
      mesh = sharding.make_mesh(**{"data": 1, "fsdp": 1, "tensor": 1, **axes})
      shardings = sharding.param_shardings(jax.eval_shape(init), mesh)
      batch = sharding.batch_sharding(mesh)
      put = lambda tree, s: jax.tree.map(jax.device_put, tree, s)
      with jax.set_mesh(mesh):  # the activations' sharding constraints resolve against it
        sharded = jax.jit(grads(mode), out_shardings=shardings)(
            put(params, shardings), jax.device_put(retain, batch), jax.device_put(forget, batch))
      worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))
                  for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(alone)))
      placed = all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in zip(
          jax.tree.leaves(sharded), jax.tree.leaves(shardings)))
      print(json.dumps({"mesh": name, "mode": mode, "devices": jax.device_count(),
                        "relative": worst, "placed": placed,
                        "tensor": sharding.uses_tensor_axis(shardings)}), flush=True)


if __name__ == "__main__":
  main()
