"""How the verdict measures a class-forgetting DDPM: each member's samples,
judged by the study's classifier (trained once, on real images only).

The distance to retraining (the DDPM's Avg Gap) is the mean of |ΔUA|,
|Δkept-class accuracy| and 100·|FD / FD_retrain − 1|, each to the retrain of
the member's own seed; the FD term is the kept-class Fréchet distance's
relative error in percent, the target band of the study being 10%.
"""

from __future__ import annotations

import jax
import numpy as np

from lur_jax.study import ensemble
from lur_jax.tasks import diffusion as diffusion_task
from lur_jax.training import cache as cache_lib
from lur_jax.verdict import tune

NAMES = ("UA", "kept_accuracy", "FD")


def gap(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """The mean of |ΔUA|, |Δkept accuracy| and 100·|FD / FD_retrain − 1| (NaN when diverged)."""
  return (np.abs(values[..., 0] - reference[..., 0]) + np.abs(values[..., 1] - reference[..., 1])
          + 100.0 * np.abs(values[..., 2] / reference[..., 2] - 1.0)) / 3.0


def fd_ratio(values: np.ndarray, reference: np.ndarray) -> dict:
  return {"FD_vs_retrain": values[..., 2] / reference[..., 2]}


def _finite(tree) -> bool:
  return all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(tree))


def scorer(exp, cache: cache_lib.ModelCache, log, progress: bool,
           chunk: int = 1) -> tune.Scorer:
  """A :class:`lur_jax.verdict.tune.Scorer` of UA, kept accuracy and FD.

  Every member is sampled with the same noise (the config seed's), so the
  differences between members are the models', not the sampler's. ``chunk``
  (default 1: XLA:CPU runs the vmapped U-Net slower than one at a time).
  """
  measure, _ = diffusion_task.measurer(exp, cache, log, progress, grids=False)

  def measured(variables) -> dict:
    if not _finite(variables["params"]):
      return {}
    try:
      return measure(variables, "")
    except (FloatingPointError, np.linalg.LinAlgError):  # samples that are not finite
      return {}

  def score(variables, members):
    rows = []
    for m in range(len(members.seeds)):
      row = measured(ensemble.member(variables, m))
      found = [row.get(k, np.nan) for k in NAMES]
      rows.append(found if np.isfinite(found).all() else [np.nan] * len(NAMES))
    return np.array(rows, float)
  return tune.Scorer(NAMES, score, gap, chunk, fd_ratio)
