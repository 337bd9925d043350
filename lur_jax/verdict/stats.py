"""Intervals and verdicts over seeds."""

from __future__ import annotations

import numpy as np

BETTER, SAME, WORSE = "better", "no measurable difference", "worse"


def interval(values) -> dict:
  """Mean with a 95% Student-t interval over the values (one per seed);
  ``None`` fields when fewer than two values are finite."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if len(v) < 2:
    return {"value": float(v.mean()) if len(v) else None, "low": None, "high": None,
            "n": int(len(v))}
  half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
  return {"value": float(v.mean()), "low": float(v.mean()) - half,
          "high": float(v.mean()) + half, "n": int(len(v))}


def paired(a, b) -> dict:
  """``a − b`` seed by seed (the same seeds, forget sets and originals) with
  its interval, and the verdict for ``a`` when lower is better."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = interval(a - b)
  if d["low"] is None:
    verdict = None
  elif d["high"] < 0:
    verdict = BETTER
  elif d["low"] > 0:
    verdict = WORSE
  else:
    verdict = SAME
  return {**d, "verdict": verdict}


def paired_bootstrap(a, b, *, seed: int = 0, resamples: int = 2000) -> dict:
  """Mean of ``a − b`` over paired items (examples, say) with a 95% bootstrap
  interval; NaN pairs are left out."""
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  d = d[np.isfinite(d)]
  rng = np.random.default_rng(seed)
  means = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
  low, high = np.quantile(means, [0.025, 0.975])
  verdict = BETTER if high < 0 else WORSE if low > 0 else SAME
  return {"value": float(d.mean()), "low": float(low), "high": float(high), "n": int(len(d)),
          "verdict": verdict}
