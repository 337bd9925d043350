"""A byte-level BPE tokenizer (Hugging Face ``tokenizers``) trained on the generated text, and
question-answer pairs as token sequences whose answer alone carries loss.

A sequence is ``question`` and ``answer`` joined by a space, then EOS; ``labels`` marks the
answer's tokens and EOS (the prompt is masked, as open-unlearning's TOFU collator does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lur_jax import extras

if TYPE_CHECKING:
  from tokenizers import Tokenizer

PAD, EOS = "<pad>", "<eos>"


def train(texts, vocab_size: int = 1024) -> Tokenizer:
  """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts).

  Args:
    texts: an iterable of strings.
    vocab_size: the vocabulary size, special tokens included (``<pad>`` = 0, ``<eos>`` = 1).

  Returns:
    The ``tokenizers.Tokenizer``.
  """
  tk = extras.require("tokenizers", "a language-model task's tokenizer")
  decoders, pre_tokenizers = tk.decoders, tk.pre_tokenizers
  tokenizer = tk.Tokenizer(tk.models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tokenizer.train_from_iterator(list(texts), trainer)
  return tokenizer


def texts(qa) -> list[str]:
  """Every string of a list of :class:`~lur_jax.lm.tofu.QA`, for training the tokenizer."""
  return [t for q in qa for t in (q.question, q.answer, q.paraphrased_answer,
                                  *q.perturbed_answer)]


def encode(tokenizer: Tokenizer, question: str, answer: str, seq_len: int,
           vocab: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """One question-answer pair as ``(tokens [seq_len] int32, labels [seq_len] bool)``.

  The prompt's tokens, then the answer's (with a leading space), then EOS, padded with
  ``<pad>``; ``labels`` marks the answer and EOS.

  Args:
    tokenizer: from :func:`train`.
    question, answer: the texts.
    seq_len: the model's context.
    vocab: the model's vocabulary size, checked against the tokenizer's (``None``: unchecked).

  Returns:
    The tokens and the loss mask.

  Raises:
    ValueError: when the pair does not fit ``seq_len`` or the vocabularies differ.
  """
  if vocab is not None and tokenizer.get_vocab_size() != vocab:
    raise ValueError(f"model.vocab={vocab} but the tokenizer has "
                     f"{tokenizer.get_vocab_size()} tokens; allowed: the same size")
  prompt = tokenizer.encode(question).ids
  reply = tokenizer.encode(" " + answer).ids + [tokenizer.token_to_id(EOS)]
  n = len(prompt) + len(reply)
  if n > seq_len:
    raise ValueError(f"a question and answer of {n} tokens ({question!r}); allowed: at most "
                     f"model.seq_len={seq_len}")
  tokens = np.full(seq_len, tokenizer.token_to_id(PAD), np.int32)
  tokens[:n] = prompt + reply
  labels = np.zeros(seq_len, bool)
  labels[len(prompt):n] = True
  return tokens, labels
