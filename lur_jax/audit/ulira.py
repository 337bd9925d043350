"""U-LiRA: a per-example likelihood-ratio attack on unlearning (Hayes et al. 2024,
arXiv 2403.01218), and bootstrap intervals.

Shadow runs draw their forget sets at random from an audit pool, so each
audited example lies in the forget set of about half of the runs. In such a
run it gives two observations: its logit-scaled confidence under the
unlearned model (trained on it, then unlearned) and under the retrained
model (never trained on it). Per example, a Gaussian is fitted to each kind
on half of its runs; on the other half the test says "unlearned" where the
unlearned Gaussian is the likelier. Balanced accuracy 0.5 means the method
cannot be told from retraining; the per-example accuracies show which
examples stay exposed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
  value: float
  low: float  # 95% bootstrap percentile interval
  high: float


class AttackResult(NamedTuple):
  balanced_accuracy: Interval
  auc: Interval
  per_example_accuracy: np.ndarray  # [examples]; NaN where an example had no test run
  observations: int  # test observations of each kind


def auc(scores_unlearned: np.ndarray, scores_retrained: np.ndarray) -> float:
  """P(score of an unlearned observation > a retrained one's), ties counting ½."""
  both = np.concatenate([scores_unlearned, scores_retrained])
  order = np.argsort(both, kind="mergesort")
  ranks = np.empty(len(both))
  sorted_scores = both[order]
  # Average ranks over ties.
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
  ends = np.r_[starts[1:], len(both)]
  for s, e in zip(starts, ends):
    ranks[order[s:e]] = (s + e - 1) / 2 + 1
  n_u, n_r = len(scores_unlearned), len(scores_retrained)
  return float((ranks[:n_u].sum() - n_u * (n_u + 1) / 2) / (n_u * n_r))


def _gaussian_log_pdf(x, mean, var):
  return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def _split(in_forget: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Per example, its forget-set runs split at random into fitting and testing halves."""
  fit, test = np.zeros_like(in_forget), np.zeros_like(in_forget)
  for e in range(in_forget.shape[1]):
    runs = rng.permutation(np.flatnonzero(in_forget[:, e]))
    half = len(runs) // 2
    fit[runs[:half], e], test[runs[half:], e] = True, True
  return fit, test


def _fit(values: np.ndarray, mask: np.ndarray, global_variance: bool):
  count = mask.sum(0)
  mean = np.where(mask, values, 0).sum(0) / np.maximum(count, 1)
  squares = np.where(mask, (values - mean) ** 2, 0)
  if global_variance:  # LiRA's choice with few shadow runs per example
    var = np.full(values.shape[1], squares.sum() / max(mask.sum() - np.count_nonzero(count), 1))
  else:
    var = squares.sum(0) / np.maximum(count - 1, 1)
  return mean, np.maximum(var, 1e-12)


def _bootstrap(statistic, examples: int, rng, samples: int) -> tuple[float, float]:
  values = [statistic(rng.integers(0, examples, examples)) for _ in range(samples)]
  return float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))


def attack(unlearned: np.ndarray, retrained: np.ndarray, in_forget: np.ndarray, *,
           seed: int = 0, global_variance: bool = True, bootstrap: int = 1000) -> AttackResult:
  """Scores the per-example likelihood-ratio attack.

  Args:
    unlearned, retrained: ``[runs, examples]`` logit-scaled confidences of each
      run's unlearned and retrained model on each audited example.
    in_forget: ``[runs, examples]`` whether the example was in that run's forget
      set (only those observations are used).
    seed: the split into fitting and testing runs, and the bootstrap.
    global_variance: one variance per kind for all examples (LiRA's advice
      with few runs per example) instead of one per example.
    bootstrap: resamples of the examples for the intervals.

  Returns:
    An :class:`AttackResult`.
  """
  unlearned, retrained = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
  in_forget = np.asarray(in_forget, bool)
  if not (unlearned.shape == retrained.shape == in_forget.shape and unlearned.ndim == 2):
    raise ValueError(f"shapes {unlearned.shape}, {retrained.shape}, {in_forget.shape}; "
                     "allowed: three [runs, examples] arrays")
  if (in_forget.sum(0) < 4).any():
    raise ValueError(f"an example lies in {int(in_forget.sum(0).min())} forget sets; "
                     "allowed: at least 4 (two to fit, two to test)")
  rng = np.random.default_rng(seed)
  fit, test = _split(in_forget, rng)
  mean_u, var_u = _fit(unlearned, fit, global_variance)
  mean_r, var_r = _fit(retrained, fit, global_variance)

  def score(x):  # log-likelihood ratio: > 0 says "unlearned"
    return _gaussian_log_pdf(x, mean_u, var_u) - _gaussian_log_pdf(x, mean_r, var_r)

  score_u, score_r = score(unlearned), score(retrained)
  hits = np.where(test, (score_u > 0).astype(float) + (score_r <= 0), 0.0)  # two per test run
  tests = test.sum(0)
  per_example = np.where(tests > 0, hits.sum(0) / np.maximum(2 * tests, 1), np.nan)

  def balanced(idx):
    return hits[:, idx].sum() / (2 * tests[idx].sum())

  def area(idx):
    t = test[:, idx]
    return auc(score_u[:, idx][t], score_r[:, idx][t])

  examples = unlearned.shape[1]
  everything = np.arange(examples)
  return AttackResult(
      balanced_accuracy=Interval(balanced(everything),
                                 *_bootstrap(balanced, examples, rng, bootstrap)),
      auc=Interval(area(everything), *_bootstrap(area, examples, rng, bootstrap)),
      per_example_accuracy=per_example, observations=int(tests.sum()))


def mean_interval(values, *, seed: int = 0, bootstrap: int = 1000) -> Interval:
  """The mean of ``values`` (one per model of an ensemble) with a 95% bootstrap interval."""
  values = np.asarray(values, np.float64)
  rng = np.random.default_rng(seed)
  low, high = _bootstrap(lambda idx: values[idx].mean(), len(values), rng, bootstrap)
  return Interval(float(values.mean()), low, high)
