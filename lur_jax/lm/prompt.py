"""A pretrained model's tokenizer and prompt format, as open-unlearning builds TOFU's inputs.

:func:`load_tokenizer` reads a checkpoint's ``tokenizer.json`` (Hugging Face ``tokenizers``)
with its EOS and padding tokens (``tokenizer_config.json``, else ``config.json``).
:class:`Template` is open-unlearning's ``template_args`` (``configs/model/*.yaml``):
:data:`PRESETS` holds its values for the models it ships. :func:`encode` builds one
question-answer pair as open-unlearning's ``preprocess_chat_instance`` does on its
tag path (``apply_chat_template: False``): the system prompt with its special tokens, the user
tags around the question, the assistant's start tag, then the answer; the whole string and the
prompt alone are tokenized with the tokenizer's special tokens, EOS is appended unless
already last, and the answer's tokens (everything after the prompt) alone carry loss.
Tokenizers' own Jinja chat templates (``apply_chat_template: True``) are not run: the presets'
tags write the same turns, without the date header Llama 3's template adds.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np
from tokenizers import Tokenizer


class Template(NamedTuple):
  """open-unlearning's ``template_args``: the text around a question and its answer.

  Attributes:
    user_start, user_end: before and after the question (``user_start_tag``, ...).
    asst_start, asst_end: before and after the answer.
    system: the system prompt with its special tokens, first (``""``: none).
  """

  user_start: str
  user_end: str
  asst_start: str
  asst_end: str
  system: str = ""


_LLAMA3 = Template("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
                   "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>",
                   "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                   "You are a helpful assistant.<|eot_id|>")
_QWEN = Template("<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>\n",
                 "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")

#: open-unlearning's ``template_args`` by its model config's name (``configs/model/``).
PRESETS = {
    "Llama-2-7b-hf": Template("Question: ", "\n", "Answer: ", "\n\n"),
    "Llama-2-7b-chat-hf": Template("[INST] ", " [/INST]", "", " "),
    "Llama-3.1-8B-Instruct": _LLAMA3,
    "Llama-3.2-1B-Instruct": _LLAMA3,
    "Llama-3.2-3B-Instruct": _LLAMA3,
    "Phi-3.5-mini-instruct": Template("<|user|>\n", "<|end|>\n", "<|assistant|>\n", "<|end|>\n",
                                      "<|system|>\nYou are a helpful assistant.<|end|>\n"),
    "Qwen2.5-1.5B-Instruct": _QWEN,
    "Qwen2.5-3B-Instruct": _QWEN,
    "Qwen2.5-7B-Instruct": _QWEN,
    "gemma-7b-it": Template("<bos><start_of_turn>user\n", "<end_of_turn>\n",
                            "<start_of_turn>model\n", "<end_of_turn>\n"),
    "zephyr-7b-beta": Template("<|user|>\n", "</s>", "<|assistant|>\n", "</s>",
                               "<|system|>\nYou are a helpful assistant.</s>\n"),
}


class Pretrained(NamedTuple):
  """A checkpoint's tokenizer: the ``tokenizers.Tokenizer`` and its EOS and pad ids."""

  tokenizer: Tokenizer
  eos: int
  pad: int


def _token_id(tokenizer: Tokenizer, value) -> int | None:
  if isinstance(value, dict):  # {"content": "</s>", ...} in older tokenizer_config.json files
    value = value.get("content")
  if isinstance(value, list):
    value = value[0] if value else None
  if isinstance(value, int):
    return value
  return None if value is None else tokenizer.token_to_id(value)


def load_tokenizer(path: str) -> Pretrained:
  """The tokenizer of a checkpoint folder.

  Args:
    path: a folder with ``tokenizer.json`` (and ``tokenizer_config.json`` or ``config.json``
      naming the EOS token).

  Returns:
    A :class:`Pretrained`; the pad id is the tokenizer's pad token, else EOS.

  Raises:
    ValueError: for a folder without ``tokenizer.json``, or no EOS token to be found.
  """
  file = os.path.join(path, "tokenizer.json")
  if not os.path.isfile(file):
    raise ValueError(f"{path!r} has no tokenizer.json; allowed: a checkpoint folder with a "
                     "Hugging Face fast tokenizer")
  tokenizer = Tokenizer.from_file(file)
  settings = {}
  for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
    if os.path.isfile(os.path.join(path, name)):
      with open(os.path.join(path, name)) as f:
        found = json.load(f)
      settings.update({k: v for k, v in found.items() if v is not None})
  eos = _token_id(tokenizer, settings.get("eos_token", settings.get("eos_token_id")))
  if eos is None:
    raise ValueError(f"{path!r}: no EOS token in tokenizer_config.json or config.json; "
                     "allowed: a checkpoint that names its eos_token")
  pad = _token_id(tokenizer, settings.get("pad_token", settings.get("pad_token_id")))
  return Pretrained(tokenizer, eos, eos if pad is None else pad)


def text(template: Template, question: str) -> str:
  """The prompt of ``question``: the system prompt, the user's turn, the assistant's start."""
  return (template.system + template.user_start + question + template.user_end
          + template.asst_start)


def prompt_ids(tok: Pretrained, template: Template, question: str) -> list[int]:
  """The token ids of the prompt alone (what generation continues)."""
  return tok.tokenizer.encode(text(template, question), add_special_tokens=True).ids


def encode(tok: Pretrained, template: Template, question: str, answer: str, seq_len: int,
           max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """One pair as ``(tokens [seq_len] int32, labels [seq_len] bool)``, open-unlearning's way.

  Args:
    tok: from :func:`load_tokenizer`.
    template: the prompt format (:data:`PRESETS`).
    question, answer: the texts.
    seq_len: the arrays' length (padded with ``tok.pad``).
    max_length: open-unlearning's truncation length (default ``seq_len - 1``: EOS may
      follow a truncated sequence).

  Returns:
    The tokens and the loss mask (the answer's tokens and EOS).

  Raises:
    ValueError: when the pair does not fit ``seq_len`` tokens.
  """
  max_length = seq_len - 1 if max_length is None else max_length
  prompt = text(template, question)
  ids = tok.tokenizer.encode(prompt + answer, add_special_tokens=True).ids[:max_length]
  prompt_ids = tok.tokenizer.encode(prompt, add_special_tokens=True).ids[:max_length]
  if not ids or ids[-1] != tok.eos:
    ids = ids + [tok.eos]
  if len(ids) > seq_len:
    raise ValueError(f"a question and answer of {len(ids)} tokens ({question[:40]!r}); "
                     f"allowed: at most {seq_len}")
  tokens = np.full(seq_len, tok.pad, np.int32)
  tokens[:len(ids)] = ids
  labels = np.zeros(seq_len, bool)
  labels[len(prompt_ids):len(ids)] = True
  return tokens, labels


def decode(tok: Pretrained, tokens, labels) -> str:
  """The text of the labelled tokens (an answer), special tokens dropped: what ROUGE and ZLib
  read, as open-unlearning decodes its generations."""
  ids = [int(t) for t, keep in zip(np.asarray(tokens), np.asarray(labels)) if keep]
  return tok.tokenizer.decode(ids, skip_special_tokens=True)
