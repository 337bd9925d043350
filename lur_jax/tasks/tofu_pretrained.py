"""The TOFU study on a pretrained checkpoint and TOFU's own files (``model.name="pretrained"``,
``tofu.data_dir``; ``configs/tofu_hf.py``).

The original is ``model.checkpoint`` itself (TOFU's "full" model: it was fine-tuned on every
author), read onto the study's mesh, each device its own slices. The gold standard is not
retrained (that needs the base model and a fine-tuning run): it is a retain model's
checkpoint (``tofu.retain_checkpoint``, scored as the ``retrain`` row) or its evaluation logs
(``tofu.retain_logs``: open-unlearning's ``TOFU_EVAL.json``), which forget quality and
privleak compare against. Each unlearned model is exported as a Hugging Face checkpoint
(``out/<split>/hf/<method>/``, with the tokenizer's files), and each model's evaluation is
written in open-unlearning's log format (``out/<split>/eval/<model>/TOFU_EVAL.json``).
"""

from __future__ import annotations

import hashlib
import os

from lur_jax.core import checks
from lur_jax.lm import tofu_files
from lur_jax.models import decoder, hf
from lur_jax.tasks import language
from lur_jax.training import checkpoint

MODEL_KEYS = ("name", "checkpoint", "tokenizer", "template", "seq_len", "dtype", "param_dtype",
              "remat", "attention", "attention_chunk")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json")


def active(config) -> bool:
  """Whether ``config`` unlearns a pretrained checkpoint (``model.name="pretrained"``)."""
  return config.model.get("name") == "pretrained"


def check(config, method_names) -> None:
  """The keys of the pretrained flow: the checkpoint, TOFU's files, the reference."""
  m, t = config.model, config.tofu
  unknown = sorted(set(m) - set(MODEL_KEYS))
  if unknown:
    raise ValueError(f"model.{unknown[0]}: unknown for model.name=pretrained; allowed: "
                     f"{', '.join(MODEL_KEYS)}")
  for key in ("dtype", "param_dtype"):
    checks.one_of(f"model.{key}", m.get(key, "float32"), ("float32", "bfloat16"))
  checks.one_of("model.remat", m.get("remat", "none"), ("none", "block"))
  checks.positive(m.seq_len, "model.seq_len", int)
  checks.positive(m.get("attention_chunk", 128), "model.attention_chunk", int)
  language.check_attention(config, method_names)
  if not t.get("data_dir"):
    raise ValueError("tofu.data_dir=''; allowed with model.name=pretrained: a folder of "
                     "TOFU's JSON files")
  tofu_files.template_of(m.template)
  build(config)  # config.json: the model type and its settings
  if t.get("retain_checkpoint") and t.get("retain_logs"):
    raise ValueError("tofu.retain_checkpoint and tofu.retain_logs are both set; allowed: one")
  if "retrain" in method_names and not t.get("retain_checkpoint"):
    raise ValueError("methods: retrain with model.name=pretrained needs "
                     "tofu.retain_checkpoint (the retain model); allowed: drop retrain and "
                     "set tofu.retain_logs, or set tofu.retain_checkpoint")
  for key in ("retain_checkpoint", "retain_logs"):
    path = t.get(key)
    if path and not os.path.exists(path):
      raise ValueError(f"tofu.{key}={path!r} does not exist; allowed: a path on this machine")


def build(config):
  """The decoder of ``model.checkpoint``'s ``config.json`` (no weights read)."""
  return hf.read_model(config.model.checkpoint, **_computed(config.model))


def _computed(m) -> dict:
  """How ``model`` computes: its dtype, remat and attention (the keys of :func:`hf.read_model`)."""
  return {"dtype": m.get("dtype", "float32"), "remat": m.get("remat", "none"),
          "attention": m.get("attention", "plain"),
          "attention_chunk": m.get("attention_chunk", 128)}


def fingerprint(path: str) -> str:
  """What identifies a checkpoint folder for the cache: its ``config.json`` and the names
  and sizes of its weight files (a changed checkpoint is not mistaken for the old one)."""
  digest = hashlib.sha256()
  for name in sorted(os.listdir(path)):
    if name == "config.json" or name.endswith((".safetensors", ".json")):
      full = os.path.join(path, name)
      digest.update(f"{name}:{os.path.getsize(full)}".encode())
      if name == "config.json":
        with open(full, "rb") as f:
          digest.update(f.read())
  return digest.hexdigest()


def cache_key(config) -> dict:
  """The checkpoint and the files (every method's run depends on them)."""
  t = config.tofu
  return {"tofu": {"data_dir": os.path.abspath(t.data_dir),
                   "checkpoint": fingerprint(config.model.checkpoint)}}


def given(exp, name: str) -> dict | None:
  """The original (``model.checkpoint``) and the retrain (``tofu.retain_checkpoint``), read
  onto the study's mesh; ``None`` for anything else."""
  m, t = exp.config.model, exp.config.tofu
  path = {"original": m.checkpoint, "retrain": t.get("retain_checkpoint")}.get(name)
  if not path:
    return None
  _, params = hf.load_pretrained(path, exp.mesh, param_dtype=m.get("param_dtype", "float32"),
                                 **_computed(m))
  return {"params": params, "model_state": {}}


def generator(model):
  """Greedy decoding with the decoder's KV cache, as :func:`lur_jax.lm.scorecard.scorer`
  calls it."""
  config = model.apply.pretrained[0]
  return lambda params, prompts, lengths, new, eos: decoder.greedy(config, params, prompts,
                                                                    lengths, new, eos)


def export(exp, variables, folder: str) -> None:
  """``folder``: the model as a Hugging Face checkpoint (in the original's dtype), with the
  tokenizer's files beside it."""
  source = exp.model.apply.pretrained[1] or {}
  dtype = source.get("torch_dtype", source.get("dtype", "float32"))
  hf.save_pretrained(folder, exp.model, variables["params"],
                     dtype if dtype in ("float32", "bfloat16", "float16") else "float32")
  tokenizer = exp.config.model.get("tokenizer") or exp.config.model.checkpoint
  for name in TOKENIZER_FILES:
    if os.path.isfile(os.path.join(tokenizer, name)):
      with open(os.path.join(tokenizer, name), "rb") as f:
        checkpoint.write_atomic(os.path.join(folder, name), f.read())
