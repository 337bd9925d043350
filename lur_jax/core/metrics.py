"""UA, RA, TA, MIA-efficacy and Avg. Gap, as docs/protocol.md defines them."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lur_jax.core import losses
from lur_jax.core.data import Dataset

METRICS = ("UA", "RA", "TA", "MIA")


def make_predict(eval_apply: Callable, chunk: int = 1024):
  """``predict(variables, data) -> (correct[N], confidence[N])`` on the host.

  ``eval_apply(params, model_state, x)`` is the model in evaluation mode;
  ``variables`` is ``{"params": ..., "model_state": ...}``.

  The jitted part returns per-example correctness and p_y(x); the host
  concatenates chunks and refuses non-finite outputs.
  """
  @jax.jit
  def per_example(variables, x, y):
    logits = eval_apply(variables["params"], variables["model_state"], x)
    return jnp.argmax(logits, -1) == y, losses.true_class_confidence(logits, y)

  def predict(variables, data: Dataset):
    correct, confidence = [], []
    for start in range(0, len(data), chunk):
      c, p = per_example(variables, data.x[start:start + chunk], data.y[start:start + chunk])
      correct.append(np.asarray(c))
      confidence.append(np.asarray(p))
    return np.concatenate(correct), np.concatenate(confidence)
  return predict


def mia_efficacy(retain_conf: np.ndarray, test_conf: np.ndarray, forget_conf: np.ndarray,
                 seed: int) -> float:
  """SalUn's MIA-efficacy: percent of D_f that a confidence attack calls non-member.

  An RBF SVC (C=3, gamma="auto") is fitted on p_y(x) of retain samples
  (members, 1) against test samples (non-members, 0), equal counts.

  Args:
    retain_conf: ``[N_r]`` true-class confidences on D_r.
    test_conf: ``[N_t]`` the same on the test set.
    forget_conf: ``[N_f]`` the same on D_f.
    seed: draws the equal-count samples of the two sides.

  Returns:
    MIA-efficacy in percent, 0-100.
  """
  from sklearn.svm import SVC  # pylint: disable=g-import-not-at-top
  n = min(len(retain_conf), len(test_conf))
  rng = np.random.default_rng(seed)
  members = rng.choice(retain_conf, n, replace=False)
  non_members = rng.choice(test_conf, n, replace=False)
  features = np.concatenate([members, non_members])[:, None]
  labels = np.concatenate([np.ones(n), np.zeros(n)])
  attack = SVC(C=3, gamma="auto", kernel="rbf").fit(features, labels)
  return 100.0 * float(np.mean(attack.predict(forget_conf[:, None]) == 0))


def evaluate(predict, variables, train: Dataset, forget_idx, retain_idx, test: Dataset,
             seed: int) -> dict:
  """UA, RA, TA and MIA in percent (0-100)."""
  train_correct, train_conf = predict(variables, train)
  test_correct, test_conf = predict(variables, test)
  if not (np.all(np.isfinite(train_conf)) and np.all(np.isfinite(test_conf))):
    raise FloatingPointError("non-finite model outputs")
  return {
      "UA": 100.0 - 100.0 * float(train_correct[forget_idx].mean()),
      "RA": 100.0 * float(train_correct[retain_idx].mean()),
      "TA": 100.0 * float(test_correct.mean()),
      "MIA": mia_efficacy(train_conf[retain_idx], test_conf, train_conf[forget_idx], seed),
  }


def avg_gap(result: dict, reference: dict) -> float:
  """The mean absolute difference to the reference (Retrain) over UA, RA, TA, MIA.

  Args:
    result: a method's metrics, ``{"UA", "RA", "TA", "MIA", ...}`` in percent.
    reference: Retrain's, the same keys.

  Returns:
    Avg. Gap in percentage points; 0 for Retrain itself.
  """
  return float(np.mean([abs(result[k] - reference[k]) for k in METRICS]))
