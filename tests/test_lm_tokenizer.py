"""The byte-level BPE tokenizer and question-answer pairs as masked token sequences."""

import numpy as np
import pytest
from tokenizers import Tokenizer

from lur_jax.lm import tofu, tokenizer


@pytest.fixture(scope="module")
def trained():
  qa = tofu.generate(authors=20, seed=0) + tofu.world()
  return qa, tokenizer.train(tokenizer.texts(qa), vocab_size=512)


def test_the_tokenizer_is_deterministic_round_trips_and_saves(trained):
  qa, tok = trained
  again = tokenizer.train(tokenizer.texts(qa), vocab_size=512)
  assert tok.to_str() == again.to_str()
  assert tok.get_vocab_size() == 512 and tok.token_to_id("<pad>") == 0
  text = qa[5].answer
  assert tok.decode(tok.encode(text).ids) == text
  assert Tokenizer.from_str(tok.to_str()).encode(text).ids == tok.encode(text).ids


def test_only_the_answer_and_eos_carry_loss(trained):
  qa, tok = trained
  q = qa[0]
  tokens, labels = tokenizer.encode(tok, q.question, q.answer, 64, vocab=512)
  n_prompt = len(tok.encode(q.question).ids)
  answer = tokens[labels]
  assert not labels[:n_prompt].any() and labels[n_prompt]
  assert answer[-1] == tok.token_to_id("<eos>")
  assert tok.decode(answer[:-1].tolist()).strip() == q.answer
  assert (tokens[labels.nonzero()[0][-1] + 1:] == 0).all()  # padding after EOS


def test_too_long_or_mismatched_is_one_clear_error(trained):
  qa, tok = trained
  with pytest.raises(ValueError, match="allowed: at most model.seq_len=8"):
    tokenizer.encode(tok, qa[0].question, qa[0].answer, 8)
  with pytest.raises(ValueError, match="model.vocab=1000 but the tokenizer has 512 tokens"):
    tokenizer.encode(tok, qa[0].question, qa[0].answer, 64, vocab=1000)
  lengths = [int(tokenizer.encode(tok, q.question, q.answer, 64)[1].sum()) for q in qa[:40]]
  assert min(lengths) >= 3 and np.mean(lengths) < 20
