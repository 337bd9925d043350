"""The per-example likelihood-ratio attack on synthetic confidences: at chance
when unlearning is retraining, clearly above it when it is not."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lur_jax.audit import ulira


def _runs(shift, runs=32, examples=60, seed=0, exposed=None):
  rng = np.random.default_rng(seed)
  centre = rng.normal(0.0, 3.0, examples)
  in_forget = rng.random((runs, examples)) < 0.5
  retrained = centre + rng.normal(0.0, 1.0, (runs, examples))
  offset = np.full(examples, shift) if exposed is None else np.where(exposed, shift, 0.0)
  unlearned = centre + offset + rng.normal(0.0, 1.0, (runs, examples))
  return unlearned, retrained, in_forget


def test_auc_matches_scikit_learn_with_ties():
  rng = np.random.default_rng(3)
  a, b = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)
  labels = np.r_[np.ones(40), np.zeros(30)]
  assert ulira.auc(a, b) == pytest.approx(roc_auc_score(labels, np.r_[a, b]))


def test_retraining_against_retraining_is_at_chance():
  result = ulira.attack(*_runs(0.0), bootstrap=300)
  ba = result.balanced_accuracy
  assert ba.low <= 0.5 <= ba.high, ba
  assert 0.4 < result.auc.value < 0.6


def _phi(x):
  return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_a_method_that_leaves_a_trace_is_detected_as_well_as_possible():
  # Unit Gaussians 2σ apart: the best test (threshold halfway) has balanced accuracy
  # Φ(1) ≈ 0.841 and AUC Φ(2/√2) ≈ 0.921. The attack, fitting its Gaussians on half of
  # 32 runs, reaches them: the interval holds Φ(1), and the AUC is within 0.02.
  result = ulira.attack(*_runs(2.0), bootstrap=300)
  ba = result.balanced_accuracy
  assert ba.low <= _phi(1.0) <= ba.high, ba
  assert abs(result.auc.value - _phi(math.sqrt(2.0))) < 0.02, result.auc


def test_per_example_scores_show_which_examples_stay_exposed():
  exposed = np.arange(60) < 20
  result = ulira.attack(*_runs(3.0, exposed=exposed), bootstrap=100)
  per = result.per_example_accuracy
  assert per[exposed].mean() > 0.8 and abs(per[~exposed].mean() - 0.5) < 0.1


def test_bad_input_is_refused():
  u, r, f = _runs(0.0, runs=6)
  with pytest.raises(ValueError, match="allowed: three \\[runs, examples\\] arrays"):
    ulira.attack(u, r[:, :5], f)
  with pytest.raises(ValueError, match="allowed: at least 4"):
    ulira.attack(u, r, f)


def test_mean_interval_covers_the_mean():
  interval = ulira.mean_interval(np.arange(10.0), bootstrap=200)
  assert interval.low < interval.value == 4.5 < interval.high
