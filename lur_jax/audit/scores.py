"""An audited ensemble's outputs, and its scores against the reference retrains:
U-LiRA on the shadow runs, the NeurIPS-2023 score and the summary metrics on
the fixed runs (see :mod:`lur_jax.audit.assignment`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from lur_jax.audit import forgetting_score, ulira
from lur_jax.core import metrics

_EXAMPLES_PER_CALL = 1024
# The SVC attack (MIA-efficacy) of each model is fitted on at most this many members
# and as many non-members (the study uses min(|D_r|, |D_test|) of each; its O(n²)
# fit took 7 s per model at Fashion-MNIST's 9,000, 0.3 s at 2,000).
SVC_EXAMPLES = 2000


class Outputs(NamedTuple):
  """Every member's view of the training and test sets (``[members, examples]``)."""

  confidence: np.ndarray  # logit-scaled confidence log p_y − log(1 − p_y), training set
  p_true: np.ndarray  # p_y on the training set (the SVC attack's feature)
  correct: np.ndarray
  test_p_true: np.ndarray
  test_correct: np.ndarray

  def twice(self) -> Outputs:
    """M members as 2M (the originals stand in for both halves of a role)."""
    return Outputs(*(np.concatenate([a, a]) for a in self))


def evaluator(eval_apply):
  """The jitted logits of stacked variables on a batch; build it once per audit,
  so that every ensemble of the same size reuses one compiled program."""
  return jax.jit(jax.vmap(lambda v, x: eval_apply(v["params"], v["model_state"], x),
                          in_axes=(0, None)))


def outputs(apply, variables, train, test, chunk: int = 0, strict: bool = True) -> Outputs:
  """Evaluates stacked ``variables`` (leading model axis) with ``apply`` (see
  :func:`evaluator`), ``chunk`` members per call.

  Raises:
    FloatingPointError: when a member's outputs are not finite (with
      ``strict``; otherwise that member's values are NaN and its predictions
      wrong).
  """
  models = len(jax.tree.leaves(variables["params"])[0])
  size = chunk or models

  def logits(x):
    return np.concatenate([
        np.concatenate([np.asarray(apply(jax.tree.map(lambda a, g=g: a[g:g + size], variables),
                                         x[s:s + _EXAMPLES_PER_CALL]), np.float64)
                        for s in range(0, len(x), _EXAMPLES_PER_CALL)], axis=1)
        for g in range(0, models, size)])

  def views(dataset):
    z = logits(dataset.x)
    if strict and not np.isfinite(z).all():
      raise FloatingPointError("non-finite model outputs")
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    p = np.take_along_axis(e, dataset.y[None, :, None], -1)[..., 0] / e.sum(-1)
    return z, p, (z.argmax(-1) == dataset.y) & np.isfinite(z).all(-1)
  z, p, correct = views(train)
  _, test_p, test_correct = views(test)
  return Outputs(forgetting_score.logit_scaled_confidence(z, train.y), p, correct, test_p,
                 test_correct)


def metrics_of(out: Outputs, m: int, forget: np.ndarray, retain: np.ndarray,
               seed: int) -> list[float]:
  """UA, RA, TA and MIA-efficacy (percent) of member ``m`` on the sets it was
  given; NaN for a member whose outputs are not finite."""
  if not (np.isfinite(out.p_true[m]).all() and np.isfinite(out.test_p_true[m]).all()):
    return [np.nan] * 4
  svc_members = np.random.default_rng(seed).permutation(retain)[:SVC_EXAMPLES]
  return [100.0 - 100.0 * out.correct[m, forget].mean(),
          100.0 * out.correct[m, retain].mean(), 100.0 * out.test_correct[m].mean(),
          metrics.mia_efficacy(out.p_true[m, svc_members], out.test_p_true[m],
                               out.p_true[m, forget], seed)]


def summary(out: Outputs, forget: np.ndarray, retain: np.ndarray, seed: int) -> np.ndarray:
  """``[members, 4]``: :func:`metrics_of` every member on the same sets."""
  return np.array([metrics_of(out, m, forget, retain, seed)
                   for m in range(len(out.correct))])


def _interval(values, seed, bootstrap) -> dict:
  return ulira.mean_interval(values, seed=seed, bootstrap=bootstrap)._asdict()


def forgetting(unlearned: np.ndarray, retrained: np.ndarray, utility: float, *, seed: int,
               bootstrap: int) -> dict:
  """The NeurIPS-2023 score: F (bootstrap interval over the forget examples) times
  the utility ratio, and F alone."""
  models = len(unlearned)
  points = forgetting_score.bucket_points(forgetting_score.epsilons(unlearned, retrained), models)
  quality = _interval(points, seed, bootstrap)
  return {"score": {k: v * utility for k, v in quality.items()}, "quality": quality,
          "utility": utility}


def score(out: Outputs, reference: Outputs, reference_summary: np.ndarray, assigned, *,
          seed: int, bootstrap: int) -> dict:
  """One row of the audit: ``out`` (2M members) against the reference retrains."""
  m = assigned.models
  confidence, in_forget = out.confidence[:m][:, assigned.audited], assigned.in_forget
  shadow = ulira.attack(confidence, reference.confidence[:m][:, assigned.audited], in_forget,
                        seed=seed, bootstrap=bootstrap)
  forget, retain = assigned.forget[m], assigned.retain[m]
  fixed = Outputs(*(a[m:] for a in out))
  table = summary(fixed, forget, retain, seed)
  ref_mean = reference_summary.mean(0)
  gaps = np.abs(table - ref_mean).mean(1)
  utility = float(table[:, 1].mean() / ref_mean[1] * table[:, 2].mean() / ref_mean[2])
  per_example = shadow.per_example_accuracy
  row = {name: _interval(table[:, k], seed, bootstrap)
         for k, name in enumerate(metrics.METRICS)}
  return {
      **row, "avg_gap": _interval(gaps, seed, bootstrap),
      "ulira": {"balanced_accuracy": shadow.balanced_accuracy._asdict(),
                "auc": shadow.auc._asdict(), "observations": shadow.observations,
                "exposed": float(np.nanmean(per_example >= 0.75)),
                "per_example_accuracy": [None if np.isnan(a) else float(a) for a in per_example]},
      # What the attack sees: the mean logit-scaled confidence of the audited examples
      # over the shadow runs, where a run forgot them and where it kept them.
      "confidence": {"forgotten": float(confidence[in_forget].mean()),
                     "kept": float(confidence[~in_forget].mean())},
      "neurips": forgetting(fixed.confidence[:, forget],
                            reference.confidence[m:][:, forget], utility, seed=seed,
                            bootstrap=bootstrap),
  }
