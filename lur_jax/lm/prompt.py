"""A pretrained model's tokenizer and prompt format, as open-unlearning builds TOFU's inputs.

:func:`load_tokenizer` reads a checkpoint's ``tokenizer.json`` (Hugging Face ``tokenizers``)
with its EOS and padding tokens (``tokenizer_config.json``, else ``config.json``).
:class:`Template` is open-unlearning's ``template_args`` (``configs/model/*.yaml``):
:data:`PRESETS` holds its values for the models it ships. :func:`encode` builds one
question-answer pair as open-unlearning's ``preprocess_chat_instance`` does. On its tag path
(``apply_chat_template: False``): the system prompt with its special tokens, the user tags
around the question, the assistant's start tag, then the answer, tokenized with the
tokenizer's special tokens and truncated to ``max_length``. On its chat path
(``Template.chat``, ``apply_chat_template: True``): the tokenizer's own Jinja chat template
(:mod:`lur_jax.lm.chat`) renders the system prompt, the question and the answer (with
``date_string`` where the preset sets one), tokenized without adding special tokens, not
truncated. Either way EOS is appended unless already last, and the tokens after the prompt's
(rendered alone, the assistant's turn opened) alone carry loss.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lur_jax import extras
from lur_jax.lm import chat

if TYPE_CHECKING:
  from tokenizers import Tokenizer


class Template(NamedTuple):
  """open-unlearning's ``template_args``: the text around a question and its answer.

  Attributes:
    user_start, user_end: before and after the question (``user_start_tag``, ...).
    asst_start, asst_end: before and after the answer.
    system: the system prompt with its special tokens, first (``""``: none).
    chat: render with the tokenizer's chat template (``apply_chat_template``) instead of
      the tags.
    system_prompt: the chat path's system message (``""``: none).
    date_string: the chat path's ``date_string`` (Llama 3's header; ``""``: not passed).
  """

  user_start: str
  user_end: str
  asst_start: str
  asst_end: str
  system: str = ""
  chat: bool = False
  system_prompt: str = ""
  date_string: str = ""


_HELPFUL = "You are a helpful assistant."
_LLAMA3 = Template("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
                   "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>",
                   "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                   "You are a helpful assistant.<|eot_id|>", True, _HELPFUL, "10 Apr 2025")
_QWEN = Template("<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>\n",
                 "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", True, _HELPFUL)
_QA = Template("Question: ", "\n", "Answer: ", "\n\n")

#: open-unlearning's ``template_args`` by its model config's name (``configs/model/``).
PRESETS = {
    "Llama-2-7b-hf": _QA,
    "Llama-2-13b-hf": _QA,
    "phi-1_5": _QA,
    "Llama-2-7b-chat-hf": Template("[INST] ", " [/INST]", "", " "),
    "Llama-3.1-8B-Instruct": _LLAMA3,
    "Llama-3.2-1B-Instruct": _LLAMA3,
    "Llama-3.2-3B-Instruct": _LLAMA3,
    "Phi-3.5-mini-instruct": Template("<|user|>\n", "<|end|>\n", "<|assistant|>\n", "<|end|>\n",
                                      "<|system|>\nYou are a helpful assistant.<|end|>\n", True,
                                      _HELPFUL),
    "Qwen2.5-1.5B-Instruct": _QWEN,
    "Qwen2.5-3B-Instruct": _QWEN,
    "Qwen2.5-7B-Instruct": _QWEN,
    "gemma-7b-it": Template("<bos><start_of_turn>user\n", "<end_of_turn>\n",
                            "<start_of_turn>model\n", "<end_of_turn>\n", "", True),
    "zephyr-7b-beta": Template("<|user|>\n", "</s>", "<|assistant|>\n", "</s>",
                               "<|system|>\nYou are a helpful assistant.</s>\n", True, _HELPFUL,
                               "10 Apr 2025"),
}


class Pretrained(NamedTuple):
  """A checkpoint's tokenizer: the ``tokenizers.Tokenizer``, its EOS and pad ids, its chat
  template (``None``: it has none) and its special tokens by name (``bos_token``, ...: the
  chat template's variables)."""

  tokenizer: Tokenizer
  eos: int
  pad: int
  chat_template: str | None = None
  special: dict | None = None

_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
            "mask_token")


def _content(value):
  return value.get("content") if isinstance(value, dict) else value


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
  tokenizer = extras.require("tokenizers", "a checkpoint's tokenizer").Tokenizer.from_file(file)
  settings = {}
  for name in ("config.json", "generation_config.json", "special_tokens_map.json",
               "tokenizer_config.json"):
    if os.path.isfile(os.path.join(path, name)):
      with open(os.path.join(path, name)) as f:
        found = json.load(f)
      settings.update({k: v for k, v in found.items() if v is not None})
  eos = _token_id(tokenizer, settings.get("eos_token", settings.get("eos_token_id")))
  if eos is None:
    raise ValueError(f"{path!r}: no EOS token in tokenizer_config.json or config.json; "
                     "allowed: a checkpoint that names its eos_token")
  pad = _token_id(tokenizer, settings.get("pad_token", settings.get("pad_token_id")))
  special = {k: _content(settings[k]) for k in _SPECIAL
             if isinstance(_content(settings.get(k)), str)}
  return Pretrained(tokenizer, eos, eos if pad is None else pad, chat.read(path), special)


def _rendered(tok: Pretrained, template: Template, question: str,
              answer: str | None) -> list[int]:
  """The chat path: the conversation (``answer=None``: up to the assistant's opened turn)
  rendered by the tokenizer's chat template and tokenized without added special tokens."""
  if tok.chat_template is None:
    raise ValueError("a template with chat=True, and the tokenizer has no chat_template; "
                     "allowed: a tokenizer with one, or a template with chat=False (tags)")
  messages = ([{"role": "system", "content": template.system_prompt}]
              if template.system_prompt else []) + [{"role": "user", "content": question}]
  if answer is not None:
    messages.append({"role": "assistant", "content": answer})
  extra = {"date_string": template.date_string} if template.date_string else {}
  text_ = chat.render(tok.chat_template, messages, answer is None, **(tok.special or {}),
                      **extra)
  return tok.tokenizer.encode(text_, add_special_tokens=False).ids


def text(template: Template, question: str) -> str:
  """The prompt of ``question``: the system prompt, the user's turn, the assistant's start."""
  return (template.system + template.user_start + question + template.user_end
          + template.asst_start)


def prompt_ids(tok: Pretrained, template: Template, question: str) -> list[int]:
  """The token ids of the prompt alone (what generation continues)."""
  if template.chat:
    return _rendered(tok, template, question, None)
  return tok.tokenizer.encode(text(template, question), add_special_tokens=True).ids


def encode(tok: Pretrained, template: Template, question: str, answer: str, seq_len: int,
           max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """One pair as ``(tokens [seq_len] int32, labels [seq_len] bool)``, open-unlearning's way.

  Args:
    tok: from :func:`load_tokenizer`.
    template: the prompt format (:data:`PRESETS`).
    question, answer: the texts.
    seq_len: the arrays' length (padded with ``tok.pad``).
    max_length: open-unlearning's truncation length on the tag path (default
      ``seq_len - 1``: EOS may follow a truncated sequence); the chat path is not truncated.

  Returns:
    The tokens and the loss mask (the answer's tokens and EOS).

  Raises:
    ValueError: when the pair does not fit ``seq_len`` tokens.
  """
  max_length = seq_len - 1 if max_length is None else max_length
  if template.chat:
    ids, prompt = _rendered(tok, template, question, answer), prompt_ids(tok, template, question)
  else:
    ids = tok.tokenizer.encode(text(template, question) + answer,
                               add_special_tokens=True).ids[:max_length]
    prompt = prompt_ids(tok, template, question)[:max_length]
  if not ids or ids[-1] != tok.eos:
    ids = ids + [tok.eos]
  if len(ids) > seq_len:
    raise ValueError(f"a question and answer of {len(ids)} tokens ({question[:40]!r}); "
                     f"allowed: at most {seq_len}")
  tokens = np.full(seq_len, tok.pad, np.int32)
  tokens[:len(ids)] = ids
  labels = np.zeros(seq_len, bool)
  labels[len(prompt):len(ids)] = True
  return tokens, labels


def decode(tok: Pretrained, tokens, labels) -> str:
  """The text of the labelled tokens (an answer), special tokens dropped: what ROUGE and ZLib
  read, as open-unlearning decodes its generations."""
  ids = [int(t) for t, keep in zip(np.asarray(tokens), np.asarray(labels)) if keep]
  return tok.tokenizer.decode(ids, skip_special_tokens=True)
