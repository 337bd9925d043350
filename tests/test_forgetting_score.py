"""The NeurIPS-2023 forgetting score: buckets, confidences, and the levels the
challenge's reference scorer gives on synthetic confidences (it can fail)."""

import json
import os
import sys

import numpy as np
import pytest
from conftest import ROOT

from lur_jax.audit import forgetting_score as fs

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import neurips_scorer  # noqa: E402  (benchmarks/neurips_scorer.py: the draws it scored)


def test_points_halve_per_bucket_up_to_log_n_minus_one():
  # N = 16: ceil(log 15) = 3, so six buckets of width 0.5 below ε = 3.
  eps = np.array([0.0, 0.49, 0.5, 1.2, 2.9, 3.0, 50.0])
  np.testing.assert_allclose(fs.bucket_points(eps, 16), [1, 1, 0.5, 0.25, 1 / 32, 0, 0])


def test_logit_scaled_confidence_is_the_log_odds_of_the_true_class():
  logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  conf = fs.logit_scaled_confidence(logits, np.array([0, 2, 0]))
  np.testing.assert_allclose(conf[:2], np.log([p[0, 0] / (1 - p[0, 0]), p[1, 2] / (1 - p[1, 2])]))
  assert conf[2] == pytest.approx(40.0 - np.log(2.0), abs=1e-9)  # no 1 − p round-off


def _score(models, shift, examples=60, seed=0):
  rng = np.random.default_rng(seed)
  centre = rng.normal(0.0, 3.0, examples)
  retrained = centre + rng.normal(0.0, 1.0, (models, examples))
  unlearned = centre + shift + rng.normal(0.0, 1.0, (models, examples))
  return fs.forgetting_quality(unlearned, retrained)


@pytest.mark.study
def test_the_scores_of_the_challenges_scorer_on_the_same_draws():
  """The draws of ``benchmarks/neurips_scorer.py --examples 50`` (one generator, seeded 0,
  through shifts 0, 1, 3 sd and N = 16, 32, 128), scored by lur_jax, give exactly the
  scores the challenge's own scorer gave (``benchmarks/results/neurips_scorer.json``):
  identical distributions reach 0.164 / 0.176 / 0.178, not 1."""
  with open(os.path.join(ROOT, "benchmarks", "results", "neurips_scorer.json")) as f:
    recorded = json.load(f)["rows"]
  rng = np.random.default_rng(0)
  for row in recorded:
    unlearned, retrained = neurips_scorer.confidences(rng, row["models"], row["examples"],
                                                      row["shift_sd"])
    ours = fs.bucket_points(fs.epsilons(unlearned, retrained), row["models"]).mean()
    assert ours == pytest.approx(row["reference"], abs=1e-12), row


def test_a_shift_is_detected_and_more_models_detect_it_better():
  same = _score(32, 0.0)
  shifted = [_score(n, 1.0) for n in (16, 32, 128)]
  assert all(s < same for s in shifted), shifted
  assert shifted[2] < shifted[0], shifted  # the reference: about 0.10, 0.07, 0.03
  assert _score(32, 4.0) < 0.02


def test_a_collapsed_side_scores_the_cap():
  rng = np.random.default_rng(1)
  retrained = rng.normal(0, 1, (16, 3))
  unlearned = np.full((16, 3), 0.2) + 1e-6 * rng.normal(0, 1, (16, 3))
  np.testing.assert_array_equal(fs.epsilons(unlearned, retrained), fs.EPSILON_CAP)


def test_bad_shapes_are_refused():
  with pytest.raises(ValueError, match=r"allowed: two \[models >= 2, examples\] arrays"):
    fs.epsilons(np.zeros((4, 3)), np.zeros((5, 3)))
