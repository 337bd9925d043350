"""open-unlearning's TOFU default on a real checkpoint (docs/pretrained.md): unlearn
``tofu_Llama-3.2-1B-Instruct_full`` on forget10 (AdamW, lr 1e-5, 10 epochs, a forget batch of
32 with as many retain pairs), scored against the retain90 model's evaluation logs.

Nothing is downloaded: bring the folders (on a machine with a network,
``huggingface-cli download open-unlearning/tofu_Llama-3.2-1B-Instruct_full --local-dir
...``, TOFU's JSON files from ``locuslab/TOFU``, the retain90 model's ``TOFU_EVAL.json`` from
open-unlearning's ``saves/eval``), then on an 8-chip slice:

    lur-jax plan configs/tofu_hf.py --set model.checkpoint=FULL --memory 16GiB
    lur-jax run configs/tofu_hf.py --out runs/tofu_hf \\
      --set model.checkpoint=FULL --set tofu.data_dir=TOFU \\
      --set tofu.retain_logs=RETAIN90/TOFU_EVAL.json

The planner needs ``config.json`` alone (no weights): docs/pretrained.md records its plan for
Llama-3.2-1B and Llama-3.1-8B on 8 × 16 GiB and 8 × 80 GiB.
"""

import ml_collections
import tofu


def get_config() -> ml_collections.ConfigDict:
  c = tofu.get_config()
  c.methods = "graddiff,npo,simnpo,lur_npo"
  c.forget.split = "forget10"
  c.model = ml_collections.ConfigDict({
      "name": "pretrained", "checkpoint": "", "tokenizer": "",
      "template": "Llama-3.2-1B-Instruct", "seq_len": 512, "dtype": "bfloat16",
      "param_dtype": "float32", "remat": "block",
      "attention": "plain", "attention_chunk": 128})
  c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1})
  c.unlearn.update({"epochs": 10, "lr": 1e-5, "batch_size": 32, "forget_batch_size": 32,
                    "optimizer": "adam", "weight_decay": 0.01, "schedule": "constant"})
  c.lur.mode = "hvp"
  c.tofu.eval_batch_size = 32  # open-unlearning's eval batch: 32 × 512 × 128256 logits
  return c
