"""Teacher-forced answer NLLs and greedy decoding on models whose answers are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lur_jax.lm import evaluate

VOCAB, EOS = 6, 1


def successor_model(params, tokens):
  """Predicts token + 1 (mod VOCAB) with logit ``params``; the rest at 0."""
  return params * jnp.eye(VOCAB)[(tokens + 1) % VOCAB]


def test_answer_nll_is_the_mean_over_answer_tokens():
  tokens = np.array([[2, 3, 4, 5, 0], [2, 4, 1, 0, 0]], np.int32)
  labels = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], bool)
  nll = evaluate.answer_nll(successor_model, 5.0, tokens, labels, chunk=1)
  right = -np.log(np.exp(5) / (np.exp(5) + VOCAB - 1))  # the successor was the label
  wrong = -np.log(1 / (np.exp(5) + VOCAB - 1))
  np.testing.assert_allclose(nll, [right, (wrong + wrong) / 2], rtol=1e-5)


def test_greedy_decoding_follows_the_argmax_and_stops_at_eos():
  prompts = np.zeros((2, 10), np.int32)
  prompts[0, :2] = [2, 3]  # continues 4, 5, 0, 1 (EOS), then pads
  prompts[1, :1] = [4]  # continues 5, 0, 1 (EOS)
  out = evaluate.greedy(successor_model, 5.0, prompts, [2, 1], max_new=6, eos=EOS, pad=9)
  np.testing.assert_array_equal(out, [[4, 5, 0, 1, 9, 9], [5, 0, 1, 9, 9, 9]])
  with pytest.raises(ValueError, match="allowed: prompt \\+ max_new <= the buffer"):
    evaluate.greedy(successor_model, 5.0, prompts, [2, 1], max_new=9, eos=EOS)


def test_token_stats_and_teacher_forcing_skip_the_prompt_and_eos():
  tokens = np.array([[2, 3, 4, 5, 1, 0]], np.int32)  # prompt 2; answer 3 4 5; EOS
  labels = np.array([[0, 1, 1, 1, 1, 0]], bool)
  (logprobs, mu, var), = evaluate.token_stats(successor_model, 5.0, tokens, labels)
  right = np.log(np.exp(5) / (np.exp(5) + VOCAB - 1))
  np.testing.assert_allclose(logprobs, [right] * 3, rtol=1e-5)  # EOS's own (wrong) not scored
  p = np.exp([right] + [right - 5] * (VOCAB - 1))
  np.testing.assert_allclose(mu, [(p * np.log(p)).sum()] * 3, rtol=1e-5)
  np.testing.assert_allclose(var, [(p * np.log(p) ** 2).sum() - (p * np.log(p)).sum() ** 2] * 3,
                             rtol=1e-4)
  (predicted, answer), = evaluate.teacher_forced(successor_model, 5.0, tokens, labels)
  np.testing.assert_array_equal(predicted, [3, 4, 5])
  np.testing.assert_array_equal(answer, [3, 4, 5])


@pytest.mark.parametrize("x64", [False, True])
def test_min_k_plus_plus_variance_is_exact_on_a_flat_distribution(x64):
  """Near-uniform logits (the case where E[log² p] − μ² cancelled to noise: scores 0.68 apart
  from open-unlearning's in an independent check) against float64 in numpy."""
  vocab = 4096
  flat = np.random.default_rng(0).normal(0, 1e-3, (1, 4, vocab))
  tokens = np.array([[5, 6, 7, 8]], np.int32)
  labels = np.array([[0, 1, 1, 1]], bool)
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    (_, mu, var), = evaluate.token_stats(lambda p, t: jnp.asarray(flat, dtype), None, tokens,
                                         labels)
  logp = flat[0, :-1] - np.log(np.exp(flat[0, :-1]).sum(-1, keepdims=True))
  p = np.exp(logp)
  want_mu = (p * logp).sum(-1)
  want = (p * (logp - want_mu[:, None]) ** 2).sum(-1)[:2]  # positions of the answer, EOS out
  np.testing.assert_allclose(var, want, rtol=1e-9 if x64 else 1e-4)  # old form: 5.6e-8, 31
  np.testing.assert_allclose(mu, want_mu[:2], rtol=1e-12 if x64 else 1e-6)


def test_grad_norms_are_per_example_and_zero_at_a_minimum():
  params = {"w": jnp.ones((VOCAB, VOCAB))}
  model = lambda p, x: p["w"][x]
  tokens = np.array([[2, 3, 4, 1], [2, 3, 4, 1]], np.int32)
  labels = np.array([[0, 1, 1, 1]] * 2, bool)
  norms = evaluate.grad_norms(model, params, tokens, labels, chunk=1)
  # uniform logits: d(mean NLL)/dw at rows 2, 3: (softmax − onehot)/2 each
  row = np.full(VOCAB, 1 / VOCAB)
  row[3] -= 1
  np.testing.assert_allclose(norms, [np.sqrt(2) * np.linalg.norm(row) / 2] * 2, rtol=1e-5)
  peaked = {"w": 50 * jnp.eye(VOCAB)[(jnp.arange(VOCAB) + 1) % VOCAB]}
  assert evaluate.grad_norms(model, peaked, tokens, labels).max() < 1e-12
