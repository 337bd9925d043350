"""A fixture checkpoint loaded onto a sharded mesh; run by test_pretrained.py on 8 devices.

    python tests/pretrained_sharded_check.py NAME [data,fsdp,tensor ...]

Prints one JSON line per mesh: the largest logit difference to transformers' logits, and
whether every parameter arrived sharded as its logical names ask, each device holding only
its slice (``largest_piece``: the largest fraction of all parameters any device holds).
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import lur_jax
from lur_jax.training import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
  name, meshes = argv[0], argv[1:] or ["1,8,1"]
  path = os.path.join(ROOT, "tests", "fixtures", "hf", name)
  tokens, want = (np.load(os.path.join(path, f)) for f in ("tokens.npy", "logits.npy"))
  for spec in meshes:
    data, fsdp, tensor = (int(v) for v in spec.split(","))
    mesh = sharding.make_mesh(data=data, fsdp=fsdp, tensor=tensor)
    model, params = lur_jax.load_pretrained(path, mesh=mesh)
    asked = sharding.param_shardings(jax.eval_shape(model.partitioned, jax.random.key(0)), mesh)
    placed = all(a.sharding.is_equivalent_to(s, a.ndim)
                 for a, s in zip(jax.tree.leaves(params), jax.tree.leaves(asked)))
    held = {}
    for a in jax.tree.leaves(params):
      for s in a.addressable_shards:
        held[s.device] = held.get(s.device, 0) + s.data.size
    piece = max(held.values()) / sum(a.size for a in jax.tree.leaves(params))
    sharded = sum(not a.sharding.is_fully_replicated for a in jax.tree.leaves(params))
    with jax.set_mesh(mesh):
      got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(tokens)))
    print(json.dumps({"mesh": spec, "logits": float(np.max(np.abs(got - want))),
                      "placed": placed, "sharded": sharded,
                      "parameters": len(jax.tree.leaves(params)), "largest_piece": piece}))


if __name__ == "__main__":
  main(sys.argv[1:])
