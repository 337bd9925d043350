"""TOFU's own files, encoded with a pretrained checkpoint's tokenizer and prompt format.

A TOFU folder (the ``locuslab/TOFU`` dataset's JSON-lines files) holds, for forget split
``forgetNN``: ``forgetNN.json`` and ``retain{100-NN}.json`` (what the "full" model was
fine-tuned on: the study's training set, the forget pairs first), ``holdoutNN.json`` (never
trained on: the membership attacks' non-members), ``forgetNN_perturbed.json`` (the forget
questions with paraphrased and perturbed answers), and, for every split,
``retain_perturbed.json`` (the retain questions scored for model utility),
``real_authors_perturbed.json`` and ``world_facts_perturbed.json``: the files open-unlearning's
TOFU evaluation reads, each for the metric it reads it for.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

from lur_jax.core import data
from lur_jax.lm import corpus as corpus_lib, prompt, scorecard, tofu

QA_FIELDS = ("question", "answer")
EVAL_FILES = ("retain_perturbed.json", "real_authors_perturbed.json",
              "world_facts_perturbed.json")


def files(split: str) -> dict[str, str]:
  """The file names a forget split reads, by role.

  Args:
    split: ``"forget01"``, ``"forget05"`` or ``"forget10"``.

  Returns:
    ``{"forget", "retain", "holdout", "forget_perturbed", "retain_perturbed",
    "real_authors", "world_facts"}`` -> file name.

  Raises:
    ValueError: for another split.
  """
  if split not in tofu.SPLITS:
    raise ValueError(f"forget.split={split!r} with tofu.data_dir; allowed: "
                     f"{', '.join(tofu.SPLITS)}")
  nn = split[len("forget"):]
  return {"forget": f"{split}.json", "retain": f"retain{100 - int(nn)}.json",
          "holdout": f"holdout{nn}.json", "forget_perturbed": f"{split}_perturbed.json",
          **dict(zip(("retain_perturbed", "real_authors", "world_facts"), EVAL_FILES))}


def check(data_dir: str, split: str) -> None:
  """ValueError naming the first file of ``split`` missing from ``data_dir``."""
  if not os.path.isdir(data_dir):
    raise ValueError(f"tofu.data_dir={data_dir!r} is not a folder; allowed: a folder of "
                     "TOFU's JSON files")
  for name in files(split).values():
    if not os.path.isfile(os.path.join(data_dir, name)):
      raise ValueError(f"tofu.data_dir={data_dir!r} has no {name}; allowed: a folder with "
                       f"{', '.join(files(split).values())}")


class Files(NamedTuple):
  """TOFU's files of one split, encoded.

  Attributes:
    splits: the study's data (``x`` tokens, ``y`` the answer mask): train = forget then
      retain pairs; val = the world facts; test = the holdout.
    forget: what the study forgets (the first rows of train).
    sets: what each model is scored on (:class:`~lur_jax.lm.scorecard.Sets`).
    tokenizer: the checkpoint's tokenizer.
  """

  splits: data.Splits
  forget: data.ForgetSplit
  sets: scorecard.Sets
  tokenizer: prompt.Pretrained


def template_of(value) -> prompt.Template:
  """``model.template``: a preset's name (:data:`lur_jax.lm.prompt.PRESETS`) or a mapping of
  :class:`~lur_jax.lm.prompt.Template`'s fields.

  Raises:
    ValueError: for an unknown preset or field.
  """
  if isinstance(value, str):
    if value not in prompt.PRESETS:
      raise ValueError(f"model.template={value!r}; allowed: {', '.join(prompt.PRESETS)}, or "
                       f"the fields {', '.join(prompt.Template._fields)}")
    return prompt.PRESETS[value]
  fields = dict(value)
  unknown = sorted(set(fields) - set(prompt.Template._fields))
  if unknown or not set(prompt.Template._fields[:4]) <= set(fields):
    raise ValueError(f"model.template fields {sorted(fields)}; allowed: "
                     f"{', '.join(prompt.Template._fields)} (system optional)")
  return prompt.Template(**fields)


@functools.lru_cache(maxsize=4)
def _read(data_dir: str, split: str, tokenizer_dir: str, template: prompt.Template,
          seq_len: int) -> Files:
  names = files(split)
  path = lambda role: os.path.join(data_dir, names[role])
  tok = prompt.load_tokenizer(tokenizer_dir)
  encode = lambda q, a: prompt.encode(tok, template, q, a, seq_len)
  ids = lambda q: prompt.prompt_ids(tok, template, q)
  as_set = lambda qa: corpus_lib.encode_set(qa, encode, ids, seq_len)
  forget, retain = (tofu.load_json(path(r), QA_FIELDS) for r in ("forget", "retain"))
  holdout = as_set(tofu.load_json(path("holdout"), QA_FIELDS))
  perturbed = {r: as_set(tofu.load_json(path(r), tofu.FIELDS))
               for r in ("forget_perturbed", "retain_perturbed")}
  general = {r: as_set(tofu.load_json(path(r), ("question", "answer", "perturbed_answer")))
             for r in ("real_authors", "world_facts")}
  train = as_set(forget + retain)
  everything = data.Dataset(*train.answer)
  index = np.arange(len(everything.x))
  splits = data.Splits(everything, data.Dataset(*general["world_facts"].answer),
                       data.Dataset(*holdout.answer), tok.tokenizer.get_vocab_size())
  detokenize = lambda token_ids: tok.tokenizer.decode(token_ids, skip_special_tokens=True)
  sets = scorecard.Sets(perturbed["forget_perturbed"], perturbed["retain_perturbed"], holdout,
                        general["world_facts"], general["real_authors"],
                        lambda tokens, labels: prompt.decode(tok, tokens, labels), detokenize,
                        tok.eos)
  return Files(splits, data.ForgetSplit(index[:len(forget)], index[len(forget):],
                                        splits.test, ()), sets, tok)


def read(config) -> Files:
  """TOFU's files of ``config`` (``tofu.data_dir``, ``forget.split``), encoded with the
  tokenizer of ``model.tokenizer`` (default ``model.checkpoint``) and ``model.template``,
  read once per process and setting.

  Args:
    config: a TOFU config with ``tofu.data_dir`` set.

  Returns:
    The :class:`Files`.

  Raises:
    ValueError: for a missing file, a bad row, a pair longer than ``model.seq_len``.
  """
  m = config.model
  check(config.tofu.data_dir, config.forget.split)
  return _read(config.tofu.data_dir, config.forget.split, m.get("tokenizer") or m.checkpoint,
               template_of(m.template), m.seq_len)
