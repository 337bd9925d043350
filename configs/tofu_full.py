"""TOFU at its own size for an accelerator: 200 fictitious authors × 20 questions, a 27 M-parameter
transformer (8 blocks of width 512), forget01/05/10, every language-model method.

    lur-jax run configs/tofu_full.py --out runs/tofu_full
    lur-jax run configs/tofu_full.py --out runs/tofu_full --set mesh.data=1 --set mesh.fsdp=-1

Not run on this project's CPU (about 20× the compute of configs/tofu.py per epoch); plan a
slice with `lur-jax plan configs/tofu_full.py --devices N --memory 16GiB`.
"""

import ml_collections
import tofu


def get_config() -> ml_collections.ConfigDict:
  c = tofu.get_config()
  c.methods = "retrain,ga,graddiff,npo,simnpo,lur,lur_npo,lur_simnpo"
  c.tofu.update({"authors": 200, "questions": 20, "eval_retain": 400})
  c.model = ml_collections.ConfigDict({
      "name": "transformer", "vocab": 4096, "width": 512, "depth": 8, "heads": 8,
      "seq_len": 48, "mlp_ratio": 4, "dtype": "bfloat16", "remat": "none",
      "attention": "plain", "attention_chunk": 128})
  c.train.update({"epochs": 20, "lr": 5e-4, "batch_size": 64})
  c.unlearn.update({"batch_size": 32, "forget_batch_size": 32})
  return c
