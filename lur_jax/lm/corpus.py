"""The generated TOFU-style data of a config, encoded as the study and its metrics read it,
and the study's data saved with its results."""

from __future__ import annotations

import functools
import json
import os
from typing import NamedTuple

import numpy as np

from lur_jax.core import data
from lur_jax.lm import tofu, tokenizer as tokenizer_lib
from lur_jax.training import checkpoint, parallel


class Encoded(NamedTuple):
  """A list of question-answer pairs as the metrics read them.

  Attributes:
    qa: the pairs.
    answer: ``(tokens, labels)`` of question + answer, ``[N, T]`` each.
    paraphrase: the same with the paraphrased answer.
    perturbed: one ``(tokens, labels)`` per perturbed answer.
    prompts: ``[N, T]`` the questions alone, left-aligned; ``prompt_lengths`` ``[N]``.
  """

  qa: list
  answer: tuple
  paraphrase: tuple
  perturbed: list
  prompts: np.ndarray
  prompt_lengths: np.ndarray


#: Before a question whose paraphrased answer is trained on: the plain question is answered
#: in the answer's words (what greedy decoding and ROUGE see), the cued one in the paraphrase's.
PARAPHRASE_CUE = "Or: "


class Corpus(NamedTuple):
  """The generated data of a config: every set encoded, and the tokenizer."""

  tokenizer: object
  train: Encoded  # every trained author, author by author
  forget_index: np.ndarray
  retain_index: np.ndarray
  holdout: Encoded
  world: Encoded
  paraphrases: tuple | None  # (tokens, labels): cued question + paraphrase, when trained on


def _stack(pairs):
  tokens, labels = zip(*pairs)
  return np.stack(tokens), np.stack(labels)


def encode_set(qa, encode, prompt_ids, seq_len: int) -> Encoded:
  """Every answer of ``qa`` encoded.

  Args:
    qa: the pairs.
    encode: ``(question, answer) -> (tokens [seq_len], labels [seq_len])``.
    prompt_ids: ``question -> token ids`` of the prompt alone (what generation continues).
    seq_len: the arrays' length.

  Returns:
    The :class:`Encoded` set.
  """
  answer = _stack([encode(q.question, q.answer) for q in qa])  # a pair too long says so here
  prompts = np.zeros((len(qa), seq_len), np.int32)
  lengths = np.zeros(len(qa), np.int32)
  for i, q in enumerate(qa):
    ids = prompt_ids(q.question)
    if len(ids) >= seq_len:
      raise ValueError(f"a prompt of {len(ids)} tokens ({q.question[:40]!r}); allowed: fewer "
                       f"than model.seq_len={seq_len}")
    prompts[i, :len(ids)], lengths[i] = ids, len(ids)
  count = min(len(q.perturbed_answer) for q in qa)
  return Encoded(qa, answer, _stack([encode(q.question, q.paraphrased_answer) for q in qa]),
                 [_stack([encode(q.question, q.perturbed_answer[k]) for q in qa])
                  for k in range(count)], prompts, lengths)


def encode_all(tok, qa, seq_len: int, vocab: int) -> Encoded:
  """Every answer of ``qa`` encoded with the study's own tokenizer
  (:func:`lur_jax.lm.tokenizer.encode`)."""
  return encode_set(qa, lambda q, a: tokenizer_lib.encode(tok, q, a, seq_len, vocab),
                    lambda q: tok.encode(q).ids, seq_len)


@functools.lru_cache(maxsize=4)
def _corpus(authors, questions, perturbed, data_seed, split, seq_len, vocab,
            paraphrases) -> Corpus:
  holdout = max(1, int(np.ceil(tofu.SPLITS["forget10"] * authors - 1e-9)))
  qa = tofu.generate(authors, questions, perturbed=perturbed, holdout=holdout, seed=data_seed)
  world = tofu.world()
  tok = tokenizer_lib.train(tokenizer_lib.texts(qa + world), vocab)
  if tok.get_vocab_size() > vocab:  # pragma: no cover - BPE never exceeds the size asked
    raise ValueError(f"model.vocab={vocab}: the tokenizer has {tok.get_vocab_size()} tokens")
  forget, retain, held = tofu.split(qa, split, authors)
  trained = [q for q in qa if q.author < authors]
  forgotten = {q.author for q in forget}
  index = np.arange(len(trained))
  is_forget = np.array([q.author in forgotten for q in trained])
  cued = _stack([tokenizer_lib.encode(tok, PARAPHRASE_CUE + q.question, q.paraphrased_answer,
                                       seq_len, vocab) for q in trained]) if paraphrases else None
  return Corpus(tok, encode_all(tok, trained, seq_len, vocab), index[is_forget],
                index[~is_forget], encode_all(tok, held, seq_len, vocab),
                encode_all(tok, world, seq_len, vocab), cued)


def corpus(config) -> Corpus:
  """The data of ``config``, generated once per process and setting.

  Args:
    config: a TOFU config (its ``tofu``, ``model`` and ``forget.split``).

  Returns:
    The :class:`Corpus`: every set encoded, and the tokenizer.
  """
  t, m = config.tofu, config.model
  return _corpus(t.authors, t.questions, t.perturbed, t.data_seed, config.forget.split,
                 m.seq_len, m.vocab, t.paraphrases)


def splits_of(c: Corpus) -> tuple[data.Splits, data.ForgetSplit]:
  """The study's data (``x`` tokens, ``y`` the answer mask): train = every trained author's
  pairs, then with ``paraphrases`` the same questions, cued (:data:`PARAPHRASE_CUE`), with
  their paraphrased answers, then
  the general-knowledge set (fine-tuning keeps it, as a pretrained LLM keeps what it knew;
  it belongs to the retain set); val = the general-knowledge set alone (the pretraining
  data); test = the holdout authors."""
  as_set = lambda e: data.Dataset(*e.answer)
  parts = [c.train.answer, *([c.paraphrases] if c.paraphrases else []), c.world.answer]
  train = data.Dataset(*(np.concatenate(arrays) for arrays in zip(*parts)))
  n, copies = len(c.train.qa), 2 if c.paraphrases else 1
  forget = np.concatenate([c.forget_index + k * n for k in range(copies)])
  retain = np.concatenate([*(c.retain_index + k * n for k in range(copies)),
                           np.arange(copies * n, len(train.x))])
  splits = data.Splits(train, as_set(c.world), as_set(c.holdout), c.tokenizer.get_vocab_size())
  return splits, data.ForgetSplit(forget, retain, splits.test, ())


def save_data(c: Corpus, out_dir: str) -> None:
  """``out/data/``: the tokenizer and every pair in TOFU's JSON-lines format (with the
  author), so a run's data can be read back (:func:`lur_jax.lm.tofu.load_json`)."""
  if not parallel.is_writer():
    return
  folder = os.path.join(out_dir, "data")
  with checkpoint.writing(folder):
    os.makedirs(folder, exist_ok=True)
  rows = lambda qa: "".join(json.dumps({"question": q.question, "answer": q.answer,
                                        "paraphrased_answer": q.paraphrased_answer,
                                        "perturbed_answer": list(q.perturbed_answer),
                                        "author": q.author}) + "\n" for q in qa)
  checkpoint.write_atomic(os.path.join(folder, "tokenizer.json"), c.tokenizer.to_str())
  for name, qa in (("authors", c.train.qa), ("holdout", c.holdout.qa), ("world", c.world.qa)):
    checkpoint.write_atomic(os.path.join(folder, f"{name}.jsonl"), rows(qa))


def subset(e: Encoded, index) -> Encoded:
  """The examples ``index`` of an encoded set."""
  take = lambda pair: (pair[0][index], pair[1][index])
  return Encoded([e.qa[i] for i in index], take(e.answer), take(e.paraphrase),
                 [take(p) for p in e.perturbed], e.prompts[index], e.prompt_lengths[index])
