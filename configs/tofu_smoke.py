"""The TOFU study in miniature (tests and a first look): 20 authors × 4 questions, a tiny
transformer, forget10, the core language-model methods.

    lur-jax run configs/tofu_smoke.py --out /tmp/tofu_smoke
"""

import ml_collections
import tofu


def get_config() -> ml_collections.ConfigDict:
  c = tofu.get_config()
  c.methods = "retrain,ga,graddiff,npo,simnpo,lur,lur_npo"
  c.forget.split = "forget10"
  c.tofu.update({"authors": 20, "questions": 4, "perturbed": 3, "pretrain_epochs": 10,
                 "eval_retain": 16})
  c.model.update({"vocab": 512, "width": 32, "depth": 1, "heads": 2, "seq_len": 40})
  c.train.update({"epochs": 4, "batch_size": 16})
  c.unlearn.update({"epochs": 2, "batch_size": 8, "forget_batch_size": 8})
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c
