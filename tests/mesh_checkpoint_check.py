"""Run with 8 (simulated) devices: a training state sharded fsdp=8 (the tiny transformer with
SGD momentum), saved by RunCheckpoints, restored onto data=2 × fsdp=4, onto fsdp=4 on 4
devices, and onto 1 device. Prints one JSON line per target mesh: whether every leaf came
back bit-identical and with the target's sharding. Used by tests/test_sharding.py."""

import json
import os
import sys
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lur_jax.core import train  # noqa: E402
from lur_jax.models import transformer  # noqa: E402
from lur_jax.training import checkpoint, parallel, sharding, steppers  # noqa: E402

CONFIG = transformer.TransformerConfig(vocab=64, width=32, depth=2, heads=4, seq_len=16)
TARGETS = {"data=2,fsdp=4": (2, 4, 8), "fsdp=4 on 4 devices": (1, 4, 4), "1 device": (1, 1, 1)}


def _raw(tree):
  """PRNG keys as their key data, for comparing."""
  return jax.tree.map(lambda a: jax.random.key_data(a) if parallel.is_key(a) else a, tree)


def placed(state, init, mesh):
  shardings = steppers.state_shardings(state, mesh,
                                       sharding.param_shardings(jax.eval_shape(init), mesh))
  return parallel.put(state, shardings), shardings


def main():
  model = transformer.Transformer(CONFIG)
  init = lambda: model.init(jax.random.key(0), jnp.zeros((1, CONFIG.seq_len), jnp.int32))["params"]
  tx = optax.sgd(0.1, momentum=0.9)
  params = jax.tree.map(lambda a: a + 0.5, nn.unbox(init()))  # a momentum that is not zero:
  state = train.init_state(params, tx, jax.random.key(3))
  state = state._replace(opt_state=jax.tree.map(lambda a: a * 0.25, state.opt_state))
  saved = steppers.host(state)
  with tempfile.TemporaryDirectory() as directory:
    on_eight, _ = placed(state, init, sharding.make_mesh(fsdp=8))
    writer = checkpoint.RunCheckpoints(directory)
    writer.save(7, on_eight, {"position": 7, "seconds": 0.0})
    writer.close()
    for name, (data, fsdp, devices) in TARGETS.items():
      mesh = sharding.make_mesh(data=data, fsdp=fsdp, devices=devices)
      like, shardings = placed(jax.tree.map(jnp.zeros_like, state), init, mesh)
      reader = checkpoint.RunCheckpoints(directory)
      restored, meta = reader.restore(like)
      reader.close()
      same = all(np.array_equal(a, b) for a, b in zip(
          jax.tree.leaves(_raw(steppers.host(restored))), jax.tree.leaves(_raw(saved))))
      on_target = all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in zip(
          jax.tree.leaves(_raw(restored)), jax.tree.leaves(shardings)))
      print(json.dumps({"target": name, "devices": devices, "identical": same,
                        "sharded_as_target": on_target, "position": meta["position"]}),
            flush=True)


if __name__ == "__main__":
  main()
