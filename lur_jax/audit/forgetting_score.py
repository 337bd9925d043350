"""The NeurIPS 2023 machine-unlearning challenge's forgetting score.

Written from the description in arXiv 2406.09073 and the challenge's
reference scorer (``metric.py`` in google-deepmind/unlearning_evaluation),
whose numbers it reproduces (``benchmarks/neurips_scorer.py`` compares the
two on synthetic confidences). Per forget example, N unlearned and N
retrained models each give a logit-scaled confidence; every decision rule of
two families (one threshold; two thresholds around the peakier distribution)
yields FPR and FNR over the models, hence an ε of differential privacy; the
example's ε is the largest, bucketed into points 1, 1/2, 1/4, ... The score
is the mean over the forget set (1: indistinguishable within what N models
can show; note that two identical distributions score about 0.18, not 1).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
_BUFFER = 2.0


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``log p_y − log Σ_{k≠y} p_k`` per example, stable for confident models (float64)."""
  logits = np.asarray(logits, np.float64)
  logits = logits - logits.max(axis=-1, keepdims=True)
  probs = np.exp(logits)
  probs /= probs.sum(axis=-1, keepdims=True)
  is_label = np.arange(probs.shape[-1]) == np.asarray(labels)[..., None]
  correct = np.where(is_label, probs, 0.0).sum(axis=-1)
  wrong = np.where(is_label, 0.0, probs).sum(axis=-1)  # summed apart: 1 − p_y loses it
  return np.log(correct + 1e-45) - np.log(wrong + 1e-45)


def _linspace_float32(start: float, end: float, steps: int) -> np.ndarray:
  """``torch.linspace`` on float32, as the reference's single-threshold grid is made."""
  start, end = np.float32(start), np.float32(end)
  if steps == 1:
    return np.array([start], np.float32)
  step = np.float32((end - start) / np.float32(steps - 1))
  i = np.arange(steps)
  low = start + step * i.astype(np.float32)
  high = end - step * (steps - i - 1).astype(np.float32)
  return np.where(i < steps // 2, low, high).astype(np.float32)


def _rates(inside_pos: np.ndarray, inside_neg: np.ndarray, n: int):
  """TPR, FNR, FPR, TNR (float32) from how many models each rule calls positive."""
  n32 = np.float32(n)
  tpr = inside_pos.astype(np.float32) / n32
  fpr = inside_neg.astype(np.float32) / n32
  return tpr, (n - inside_pos).astype(np.float32) / n32, fpr, (n - inside_neg).astype(
      np.float32) / n32


def _count_in(sorted_confs: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
  """How many confidences lie in ``[left, right]`` (0 where left > right)."""
  count = (np.searchsorted(sorted_confs, right, side="right")
           - np.searchsorted(sorted_confs, left, side="left"))
  return np.maximum(count, 0)


def _double_threshold(pos: np.ndarray, neg: np.ndarray):
  """Two thresholds; everything between them is called the peakier distribution."""
  pos_range, neg_range = np.ptp(pos), np.ptp(neg)
  width = neg_range if pos_range > neg_range else pos_range
  if pos_range >= neg_range:
    pos, neg = neg, pos
  low = pos.min() + width - _BUFFER
  high = pos.max() + _BUFFER
  right = np.linspace(low, high, num=int(math.ceil((high - low) * THRESHOLDS_PER_UNIT)))
  per_right = int(math.ceil(2 * _BUFFER * THRESHOLDS_PER_UNIT))
  left = np.concatenate([np.linspace(r - width - _BUFFER, r - width + _BUFFER, num=per_right)
                         for r in right]) if len(right) else np.zeros(0)
  right = np.repeat(right, per_right)
  return _rates(_count_in(np.sort(pos), left, right), _count_in(np.sort(neg), left, right),
                len(pos))


def _single_threshold(pos: np.ndarray, neg: np.ndarray):
  """One threshold; everything at or above it is called positive."""
  both = np.concatenate([pos, neg])
  low, high = both.min(), both.max()
  thresholds = _linspace_float32(low, high, int(math.ceil((high - low) * THRESHOLDS_PER_UNIT)))
  thresholds = thresholds.astype(np.float64)
  at_or_above = lambda c: len(c) - np.searchsorted(np.sort(c), thresholds, side="left")
  return _rates(at_or_above(pos), at_or_above(neg), len(pos))


def example_epsilon(pos: np.ndarray, neg: np.ndarray) -> float:
  """The ε of one example from the confidences of its positive and negative models."""
  pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
  pos_range, neg_range = np.ptp(pos), np.ptp(neg)
  largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
  with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # rules with no finite ε: dropped below
    if smallest / largest < 0.01:  # one side collapsed: as bad as it gets
      return EPSILON_CAP
    d, s = _double_threshold(pos, neg), _single_threshold(pos, neg)
    tpr, fnr, fpr, tnr = (np.concatenate([a, b]) for a, b in zip(d, s))
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    one_sided = ~perfect & (fpr * fnr == 0)  # too few models to tell: discarded
    eps = np.nanmax(np.stack([np.log(np.float32(1 - DELTA) - fpr) - np.log(fnr),
                              np.log(np.float32(1 - DELTA) - fnr) - np.log(fpr)]), axis=0)
    eps = np.clip(eps, 0, None).astype(np.float32)
  eps = np.where(perfect, np.inf, np.where(one_sided, np.nan, eps))
  kept = eps[~np.isnan(eps)]
  if not len(kept):
    raise ValueError("every decision rule was discarded; allowed: confidences that vary")
  return float(min(np.max(kept), EPSILON_CAP))


def sides(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(positive, negative)`` per example: positive is the kind with the larger median."""
  retrain_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
  return (np.where(retrain_positive, retrained, unlearned),
          np.where(retrain_positive, unlearned, retrained))


def epsilons(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
  """Per-example ε from confidences ``[models, examples]`` of both kinds."""
  unlearned, retrained = np.asarray(unlearned, np.float64), np.asarray(retrained, np.float64)
  if unlearned.ndim != 2 or unlearned.shape != retrained.shape or unlearned.shape[0] < 2:
    raise ValueError(f"confidences {unlearned.shape} and {retrained.shape}; allowed: two "
                     "[models >= 2, examples] arrays of one shape")
  pos, neg = sides(unlearned, retrained)
  return np.array([example_epsilon(pos[:, i], neg[:, i]) for i in range(pos.shape[1])])


def bucket_points(eps: np.ndarray, num_models: int) -> np.ndarray:
  """Points per example: 1 for ε in [0, 0.5), 1/2 in [0.5, 1), ... up to ceil(log(N − 1))."""
  top = math.ceil(math.log(num_models - 1))
  starts = np.arange(0.0, top - 0.5 + 1e-9, 0.5)
  points = np.zeros(len(eps))
  for k, start in enumerate(starts):  # the lowest bucket that holds ε wins
    points[(points == 0) & (eps < start + 0.5)] = 0.5 ** k
  return points


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray) -> float:
  """F: the mean of :func:`bucket_points` over the forget set."""
  eps = epsilons(unlearned, retrained)
  return float(bucket_points(eps, unlearned.shape[0]).mean())
