"""Language-model losses and metrics on closed forms (issue 26's foundation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lur_jax.lm import losses, metrics


def test_answer_losses_count_only_labelled_next_tokens():
  vocab = 8
  logits = jnp.zeros((2, 5, vocab))  # uniform: every token costs log 8
  tokens = jnp.arange(10).reshape(2, 5) % vocab
  labels = jnp.array([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]], bool)
  nll = losses.token_nll(logits, tokens, labels)
  np.testing.assert_allclose(nll, np.log(vocab) * np.array([[0, 1, 1, 1], [0, 0, 1, 0]]),
                             rtol=1e-6)
  total, count = losses.sequence_nll(logits, tokens, labels)
  np.testing.assert_array_equal(count, [3, 1])
  np.testing.assert_allclose(losses.answer_loss(logits, tokens, labels), np.log(vocab),
                             rtol=1e-6)
  # the label of position t is token t + 1: a logit on the right token lowers only that term
  sharp = logits.at[0, 2, tokens[0, 3]].set(20.0)
  assert losses.token_nll(sharp, tokens, labels)[0, 2] < 1e-6


def test_npo_and_simnpo_are_their_formulas_and_push_the_forget_nll_up():
  beta = 0.1
  nll, ref = jnp.array([3.0, 5.0]), jnp.array([4.0, 4.0])
  s = ref - nll  # log p_θ − log p_ref
  expected = -2 / beta * np.mean(np.log(1 / (1 + np.exp(beta * np.asarray(s)))))
  np.testing.assert_allclose(losses.npo_loss(nll, ref, beta), expected, rtol=1e-6)
  np.testing.assert_allclose(losses.npo_loss(ref, ref, beta), 2 / beta * np.log(2), rtol=1e-6)
  assert (jax.grad(lambda n: losses.npo_loss(n, ref, beta))(nll) < 0).all()
  count = jnp.array([2.0, 5.0])
  a = np.asarray(nll / count)
  expected = -2 / 4.5 * np.mean(np.log(1 / (1 + np.exp(-4.5 * a))))
  np.testing.assert_allclose(losses.simnpo_loss(nll, count, 4.5), expected, rtol=1e-5)
  np.testing.assert_allclose(losses.simnpo_loss(jnp.zeros(2), count, 4.5), 2 / 4.5 * np.log(2),
                             rtol=1e-6)
  assert (jax.grad(lambda n: losses.simnpo_loss(n, count, 4.5))(nll) < 0).all()


def test_probabilities_and_truth_ratios():
  correct = np.array([0.5, 1.0])
  wrong = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
  assert metrics.probability(correct) == pytest.approx(np.mean(np.exp(-correct)))
  p_c, p_w = np.exp(-correct), np.exp(-wrong).sum(-1)
  assert metrics.normalised_probability(correct, wrong) == pytest.approx(
      np.mean(p_c / (p_c + p_w)))
  ratios = metrics.truth_ratios(correct, wrong)
  np.testing.assert_allclose(ratios, np.exp(-wrong.mean(-1)) / np.exp(-correct), rtol=1e-9)
  assert ratios[1] == pytest.approx(1.0)  # wrong as likely as right
  assert metrics.truth_ratio(ratios, "closer_to_1_better") == pytest.approx(
      np.mean(np.minimum(ratios, 1 / ratios)))
  assert metrics.truth_ratio(ratios, "true_better") == pytest.approx(
      np.mean(np.maximum(0, 1 - ratios)))
  with pytest.raises(ValueError, match="aggregation='mean'; allowed: closer_to_1_better"):
    metrics.truth_ratio(ratios, "mean")


def test_forget_quality_tells_apart_and_alike():
  rng = np.random.default_rng(0)
  a = rng.random(200)
  assert metrics.forget_quality(a, a) == pytest.approx(1.0)
  assert metrics.forget_quality(a, a + 0.5) < 1e-6


def test_model_utility_is_a_harmonic_mean_and_zero_with_any_zero():
  assert metrics.model_utility([0.5, 1.0]) == pytest.approx(2 / 3)
  assert metrics.model_utility([0.9] * 9) == pytest.approx(0.9)
  assert metrics.model_utility([0.9, 0.0, 0.8]) == 0.0


@pytest.mark.parametrize("predictions, expected", [
    ([1, 2, 3, 4], 1.0),  # every token extracted
    ([9, 2, 3, 4], 0.75),  # from position 1 on
    ([9, 9, 3, 4], 0.5),
    ([9, 9, 9, 4], 0.25),
    ([9, 9, 9, 9], 0.25),  # none: k stays n − 1, as open-unlearning's loop leaves it
])
def test_extraction_strength(predictions, expected):
  assert metrics.extraction_strength(predictions, [1, 2, 3, 4]) == pytest.approx(expected)
  assert metrics.extraction_strength([], []) == 0.0


def test_membership_scores_auc_and_privleak():
  assert metrics.min_k([-1.0, -5.0, -2.0, -0.5, -3.0], k=0.4) == pytest.approx(4.0)  # 2 lowest
  assert metrics.min_k([-1.0, -5.0], k=0.4) == pytest.approx(5.0)  # at least one token
  assert metrics.min_k([]) == 0.0
  assert metrics.min_k_plus_plus([-1.0, -3.0], [-1.0, -1.0], [4.0, 0.0], k=0.5) == pytest.approx(
      2 / np.sqrt(1e-6))  # σ² clamped at 1e-6
  assert metrics.zlib_score(2.0, "ab") == pytest.approx(2.0 / len(__import__("zlib").compress(b"ab")))
  assert metrics.auc([0.1, 0.2], [0.8, 0.9]) == 1.0  # members' losses lower: AUC 1
  assert metrics.auc([0.8, 0.9], [0.1, 0.2]) == 0.0
  assert metrics.privleak(0.5) == pytest.approx(0.0)
  assert metrics.privleak(0.9, 0.6) == pytest.approx((0.1 - 0.4) / 0.4 * 100)


def test_rouge_l_recall_stems_and_counts_the_reference():
  recall = metrics.rouge_l_recall(["The cats were running home", "cat home the", "nothing"],
                                  ["the cat runs home"] * 2 + ["a b"])
  # stemmed, cats -> cat and running, runs -> run: the whole reference in order; then the
  # longest common subsequence "cat home", 2 of the reference's 4 words
  np.testing.assert_allclose(recall, [1.0, 0.5, 0.0])


def test_npo_and_simnpo_refuse_a_beta_that_is_not_positive():
  for beta in (0.0, -0.1):
    with pytest.raises(ValueError, match=f"npo beta={beta}; allowed: a number > 0"):
      losses.npo_loss(jnp.zeros(2), jnp.zeros(2), beta)
    with pytest.raises(ValueError, match=f"simnpo beta={beta}; allowed: a number > 0"):
      losses.simnpo_loss(jnp.zeros(2), jnp.ones(2), beta)
