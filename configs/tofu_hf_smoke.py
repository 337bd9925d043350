"""The pretrained flow in miniature (tests and a first look): a tiny Llama checkpoint shipped
in ``tests/fixtures/tofu_hf/`` (written by ``tests/tofu_hf_fixtures.py``), TOFU's files for
20 generated authors, forget10; GradDiff, NPO and LUR with NPO's loss (``hvp``), scored against
the shipped retain model; each unlearned model exported.

    lur-jax run configs/tofu_hf_smoke.py --out /tmp/tofu_hf_smoke
"""

import os

import ml_collections
import tofu_hf

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests",
                        "fixtures", "tofu_hf")


def get_config() -> ml_collections.ConfigDict:
  c = tofu_hf.get_config()
  c.methods = "retrain,graddiff,npo,lur_npo"
  c.forget.split = "forget10"
  c.model = ml_collections.ConfigDict({
      **c.model.to_dict(), "checkpoint": os.path.join(FIXTURES, "full"), "seq_len": 40,
      "dtype": "float32", "remat": "none",
      # the fixture's prompt format (tests/tofu_hf_fixtures.py): open-unlearning's
      # template_args, the answer on a line of its own
      "template": {"user_start": "Question: ", "user_end": "\n", "asst_start": "Answer:\n",
                   "asst_end": "\n"}})
  c.tofu.update({"data_dir": os.path.join(FIXTURES, "data"),
                 "retain_checkpoint": os.path.join(FIXTURES, "retain")})
  c.unlearn.update({"epochs": 10, "lr": 3e-3, "batch_size": 8, "forget_batch_size": 8})
  c.lur.mode = "hvp"
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c
