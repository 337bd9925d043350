"""TOFU-style unlearning (docs/language_models.md): 100 fictitious authors × 10 questions, a
1.5 M-parameter transformer, forget01/05/10 with every method, the metrics open-unlearning
reports. Sized to finish within 20 minutes on 2 CPU cores.

    lur-jax run configs/tofu.py --out runs/tofu

The transformer first learns the invented world's facts (the pretrained start), then every
author (the original, TOFU's "full" model) or the retain authors only (``retrain``). Methods
unlearn with open-unlearning's TOFU recipe (AdamW, 10 epochs over the forget set, a forget
batch of 32 with as many retain examples), at a learning rate suited to a model this small.
"""

import digits
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = digits.base_config()
  c.task = "tofu"
  c.methods = "retrain,ga,graddiff,npo,simnpo,lur,lur_npo"
  c.data.name = "tofu"
  c.forget = ml_collections.ConfigDict({"kind": "authors", "split": "forget01,forget05,forget10",
                                        "fraction": 0.1, "classes": "0", "indices": ""})
  c.tofu = ml_collections.ConfigDict({
      "authors": 100, "questions": 10, "perturbed": 5, "data_seed": 0,
      # Train on the paraphrased answers too (after a cue, "Or: <question>"): a
      # small model trained from scratch does not carry a fact from one phrasing to another
      # as a pretrained LLM does, and the truth ratio compares the paraphrase with its
      # perturbations; the plain question is still answered in the answer's words.
      "paraphrases": True,
      "pretrain_epochs": 150,  # on the 36 general-knowledge pairs
      "npo_beta": 0.1, "simnpo_beta": 4.5, "simnpo_delta": 0.0,
      "eval_retain": 200,  # retain pairs scored for model utility
      "max_new_tokens": 200,  # the most tokens generated per answer (ROUGE)
      "eval_batch_size": 256,  # examples per compiled evaluation call
      # a pretrained checkpoint on TOFU's own files (configs/tofu_hf.py) sets these
      "data_dir": "", "retain_checkpoint": "", "retain_logs": "", "export": True})
  c.model = ml_collections.ConfigDict({
      "name": "transformer", "vocab": 1024, "width": 192, "depth": 3, "heads": 4,
      "seq_len": 32, "mlp_ratio": 4, "dtype": "float32", "remat": "none",
      "attention": "plain", "attention_chunk": 128})
  c.train.update({"epochs": 20, "lr": 1e-3, "batch_size": 32, "optimizer": "adam",
                  "schedule": "cosine",
                  "weight_decay": 0.01})
  c.unlearn.update({"epochs": 10, "lr": 1e-4, "batch_size": 32, "forget_batch_size": 32,
                    "optimizer": "adam", "weight_decay": 0.01, "iterate": "forget"})
  for name in ("ft", "ga", "graddiff", "lur"):
    c[name].lr = None  # every method the unlearn recipe's rate
  c.graddiff.update({"forget_weight": 1.0,  # open-unlearning's GradDiff: γ = α = 1
                     "retain_loss": "nll"})  # nll | kl (to the model before unlearning)
  # NPO (γ = 1) and SimNPO (γ = 0.125): GradDiff with their forget losses (β, δ in `tofu`)
  c.npo = ml_collections.ConfigDict({"lr": None, "epochs": None, "retain_loss": "nll"})
  c.simnpo = ml_collections.ConfigDict({"lr": None, "epochs": None, "retain_loss": "nll"})
  c.lur.update({"forget_weight": 1.0, "retain_weight": 1.0})
  # LUR with NPO's and SimNPO's forget losses: the lur section laid under their own
  c.lur_npo = ml_collections.ConfigDict({"lr": None, "epochs": None})
  c.lur_simnpo = ml_collections.ConfigDict({"lr": None, "epochs": None})
  c.settings_kind = "authors"  # the sections above are this study's own
  c.settings_for = ml_collections.ConfigDict()
  return c
