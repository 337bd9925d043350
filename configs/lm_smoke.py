"""A small decoder-only transformer on generated token sequences (the `markov` data: 8
random Markov chains over 64 tokens), random 10% forgetting: the language task's smoke test,
and the study that runs with the transformer's parameters sharded.

    lur-jax run configs/lm_smoke.py --out /tmp/lm_smoke
    lur-jax run configs/lm_smoke.py --out /tmp/lm_tp --set mesh.data=1 --set mesh.fsdp=4 \
        --set mesh.tensor=2   # on 8 devices

Every method of the core registry runs on next-token prediction and is measured by its
negative log-likelihood on the forget, retain and test sequences against retraining.
"""

import digits
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = digits.base_config()
  c.task = "language"
  c.data.name = "markov"
  c.model = ml_collections.ConfigDict({
      "name": "transformer", "vocab": 64, "width": 32, "depth": 2, "heads": 4, "seq_len": 32,
      "mlp_ratio": 4, "dtype": "float32", "remat": "none",
      "attention": "plain", "attention_chunk": 128})
  c.train.update({"epochs": 2, "lr": 3e-3, "batch_size": 64, "optimizer": "adam",
                  "weight_decay": 0.0})
  c.unlearn.update({"epochs": 1, "lr": 1e-3, "batch_size": 64, "forget_batch_size": 32,
                    "optimizer": "adam", "weight_decay": 0.0})
  for name in ("ft", "ga", "rl", "graddiff", "l1_sparse", "salun", "shs", "lur", "lur_snip"):
    c[name].lr = None  # every method the unlearn recipe's rate
  c.shs.layers = c.lur_snip.layers = "all"  # the transformer has no `fc` head of its own
  c.settings_for = ml_collections.ConfigDict()
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c
