"""The TOFU metrics as open-unlearning computes them (``src/evals/metrics/memorization.py``,
``privacy.py``, ``utility.py``), from per-example answer NLLs and per-token predictions.

Everything here is host-side numpy on numbers a model produced, so each can be checked
against open-unlearning's own code on the same inputs.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

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
