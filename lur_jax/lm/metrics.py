"""The TOFU metrics as open-unlearning computes them (``src/evals/metrics/memorization.py``,
``privacy.py``, ``utility.py``), from per-example answer NLLs and per-token predictions.

Everything here is host-side numpy on numbers a model produced, so each can be checked
against open-unlearning's own code on the same inputs.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from lur_jax import extras

EPS = 1e-10  # open-unlearning's guard in the truth ratio and the normalised probability
AGGREGATIONS = ("closer_to_1_better", "true_better")


def probability(avg_nll) -> float:
  """Mean over examples of exp(−mean answer NLL) (length-normalised probability).

  Args:
    avg_nll: ``[N]`` each example's mean answer NLL.

  Returns:
    The mean probability.
  """
  return float(np.mean(np.exp(-np.asarray(avg_nll, np.float64))))


def normalised_probability(correct_avg_nll, wrong_avg_nll) -> float:
  """The general-knowledge sets' probability: p_correct / (p_correct + Σ p_wrong).

  Args:
    correct_avg_nll: ``[N]`` mean answer NLL of the correct answer.
    wrong_avg_nll: ``[N, P]`` the same of each wrong (perturbed) answer.

  Returns:
    The mean over questions.
  """
  correct = np.exp(-np.asarray(correct_avg_nll, np.float64))
  wrong = np.exp(-np.asarray(wrong_avg_nll, np.float64)).reshape(len(correct), -1).sum(-1)
  return float(np.mean(correct / (correct + wrong + EPS)))


def truth_ratios(correct_avg_nll, wrong_avg_nll) -> np.ndarray:
  """Per question, p_wrong / p_correct: p_correct = exp(−mean NLL of the paraphrased (or
  correct) answer), p_wrong = exp(−the mean over the perturbed answers of their mean NLL).

  Args:
    correct_avg_nll: ``[N]``.
    wrong_avg_nll: ``[N, P]``.

  Returns:
    ``[N]`` truth ratios.
  """
  correct = np.exp(-np.asarray(correct_avg_nll, np.float64))
  wrong = np.exp(-np.asarray(wrong_avg_nll, np.float64).reshape(len(correct), -1).mean(-1))
  return wrong / (correct + EPS)


def truth_ratio(ratios, aggregation: str) -> float:
  """The truth-ratio statistic of a set.

  Args:
    ratios: ``[N]`` from :func:`truth_ratios`.
    aggregation: ``"closer_to_1_better"`` (the forget set: mean of min(TR, 1/TR)) or
      ``"true_better"`` (elsewhere: mean of max(0, 1 − TR)).

  Returns:
    The statistic.

  Raises:
    ValueError: for another aggregation.
  """
  ratios = np.asarray(ratios, np.float64)
  if aggregation == "closer_to_1_better":
    return float(np.mean(np.minimum(ratios, 1 / (ratios + EPS))))
  if aggregation == "true_better":
    return float(np.mean(np.maximum(0, 1 - ratios)))
  raise ValueError(f"aggregation={aggregation!r}; allowed: {', '.join(AGGREGATIONS)}")


def forget_quality(unlearned_ratios, retain_ratios) -> float:
  """The two-sided two-sample Kolmogorov–Smirnov p-value between the forget-set truth
  ratios of the unlearned and of the retain model (≈ 1: indistinguishable from retraining).

  Args:
    unlearned_ratios, retain_ratios: ``[N]`` each.

  Returns:
    The p-value.
  """
  return float(stats.ks_2samp(unlearned_ratios, retain_ratios).pvalue)


def model_utility(values) -> float:
  """The harmonic mean of the nine utility numbers ({retain, real authors, world facts} ×
  {probability, ROUGE-L recall, truth ratio}); 0 when any is 0.

  Args:
    values: the numbers, each in [0, 1].

  Returns:
    Their harmonic mean.
  """
  values = np.asarray(values, np.float64)
  return 0.0 if (values <= 0).any() else float(stats.hmean(values))


def extraction_strength(predictions, labels) -> float:
  """1 − k/n, k the first answer position from which the teacher-forced argmax matches every
  remaining answer token (as open-unlearning's loop computes it: when no suffix matches, not
  even the last token, k stays n − 1).

  Args:
    predictions: ``[n]`` argmax next-token predictions at the answer positions.
    labels: ``[n]`` the answer tokens.

  Returns:
    The strength in [1/n, 1]; 0 for an empty answer.
  """
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  n = len(labels)
  if n == 0:
    return 0.0
  k = n - 1
  for start in range(n):
    if np.array_equal(predictions[start:], labels[start:]):
      k = start
      break
  return 1 - k / n


def rouge_l_recall(generations, answers) -> np.ndarray:
  """Per example, the ROUGE-L recall of a generation against its answer (``rouge-score``,
  Porter stemmer, as open-unlearning's ``eval_text_similarity``).

  Args:
    generations: the decoded generations.
    answers: the reference answers.

  Returns:
    ``[N]`` recalls in [0, 1].
  """
  rouge_scorer = extras.require("rouge_score.rouge_scorer", "ROUGE-L")

  scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
  return np.array([scorer.score(answer, generation)["rougeL"].recall
                   for generation, answer in zip(generations, answers, strict=True)])


# The membership attacks. Every score is signed like a loss (higher: less likely a member),
# and AUC counts the forget set as label 0, the holdout as 1: AUC 1 when the forget set is much
# more likely than the holdout, 0.5 when the attack cannot tell them apart.

def min_k(logprobs, k: float = 0.4) -> float:
  """Min-K% Prob: the negated mean of the lowest max(1, ⌊k·n⌋) token log-probabilities.

  Args:
    logprobs: ``[n]`` the answer tokens' log-probabilities (EOS excluded).
    k: the fraction kept.

  Returns:
    The score (0 for an empty answer).
  """
  logprobs = np.asarray(logprobs, np.float64)
  if logprobs.size == 0:
    return 0.0
  return float(-np.sort(logprobs)[:max(1, int(len(logprobs) * k))].mean())


def min_k_plus_plus(logprobs, mu, var, k: float = 0.4) -> float:
  """Min-K%++: Min-K% of (log p − μ)/σ, μ and σ² the mean and variance of log p under the
  model's own next-token distribution (σ² clamped at 1e-6).

  Args:
    logprobs, mu, var: ``[n]`` per answer token (EOS excluded).
    k: the fraction kept.

  Returns:
    The score (0 for an empty answer).
  """
  mu, var = np.asarray(mu, np.float64), np.asarray(var, np.float64)
  return min_k((np.asarray(logprobs, np.float64) - mu) / np.sqrt(np.maximum(var, 1e-6)), k)


def zlib_score(avg_nll: float, text: str) -> float:
  """ZLib: the mean answer NLL over the zlib-compressed length of the answer's text."""
  import zlib

  return float(avg_nll / len(zlib.compress(text.encode("utf-8"))))


def auc(member_scores, nonmember_scores) -> float:
  """The attack's ROC AUC, the members (forget set) labelled 0 and the non-members
  (holdout) 1, as open-unlearning's ``mia_auc``.

  Args:
    member_scores, nonmember_scores: loss-like scores of each set.

  Returns:
    The AUC (1: members clearly more likely; 0.5: indistinguishable).
  """
  from sklearn.metrics import roc_auc_score

  scores = np.concatenate([np.asarray(member_scores, np.float64),
                           np.asarray(nonmember_scores, np.float64)])
  labels = np.r_[np.zeros(len(member_scores)), np.ones(len(nonmember_scores))]
  return float(roc_auc_score(labels, scores))


def privleak(auc_model: float, auc_retain: float = 0.5) -> float:
  """privleak, in percent: (s − r)/r × 100 with s = 1 − AUC(Min-K%) of the unlearned model and
  r the same of the retain model (0.5 without one); near 0 is good.

  Args:
    auc_model: the unlearned model's Min-K% AUC.
    auc_retain: the retain model's.

  Returns:
    The relative difference in percent (with open-unlearning's 1e-10 guard).
  """
  score, ref = 1 - auc_model, 1 - auc_retain
  return float((score - ref) / (ref + EPS) * 100)
