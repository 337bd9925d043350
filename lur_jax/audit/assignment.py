"""Who is trained on what in an audit: the audit pool and every ensemble's members.

An audit of M runs trains M originals on all of D. Every other ensemble has
2M members, in two halves that share one compiled program (their sets have
the same sizes):

- *shadow runs* (members 0 … M−1): run ``2k`` forgets a random half of the
  audit pool (twice the study's forget-set size) and run ``2k+1`` the other
  half, so every pool example lies in the forget set of exactly half of the
  runs (U-LiRA);
- *fixed runs* (members M … 2M−1): all forget the study's forget set (the
  NeurIPS-2023 score and the summary metrics).

Member ``j`` of an unlearning ensemble starts from original ``j mod M``.
Seeds (init key and data order) are derived from the config's seed and the
role, so two roles never share a seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lur_jax.core import streams
from lur_jax.study import ensemble


class Assignment(NamedTuple):
  models: int  # M
  pool: np.ndarray  # [2F] training indices the shadow runs' forget sets come from
  audited: np.ndarray  # [E] the pool examples the per-example attack scores
  forget: np.ndarray  # [2M, F] every run's forget set
  retain: np.ndarray  # [2M, N − F]

  @property
  def in_forget(self) -> np.ndarray:
    """``[M, E]``: whether audited example e is in shadow run i's forget set."""
    return np.stack([np.isin(self.audited, f) for f in self.forget[:self.models]])

  def seeds(self, config_seed: int, role: str, count: int) -> np.ndarray:
    return np.array([streams.derive_seed(config_seed, f"audit-{role}{i}") for i in range(count)])

  def members(self, config_seed: int, role: str) -> ensemble.Members:
    """The 2M runs of ``role`` (a method, or ``retrain`` / ``retrain-again``)."""
    return ensemble.Members(self.seeds(config_seed, role, 2 * self.models), self.retain,
                            self.forget)

  def originals(self, config_seed: int, train_size: int) -> ensemble.Members:
    """M models on all of D (no forget set)."""
    every = np.tile(np.arange(train_size), (self.models, 1))
    return ensemble.Members(self.seeds(config_seed, "original", self.models), every,
                            every[:, :0])


def make(config_seed: int, train_size: int, study_forget: np.ndarray, models: int,
         examples: int) -> Assignment:
  """Draws the pool and the shadow runs' halves (seeded by ``config_seed``).

  The pool holds the study's forget set and as many other examples drawn at
  random, so the fixed runs forget examples the attack also scores.
  """
  size = len(study_forget)
  rng = np.random.default_rng(streams.derive_seed(config_seed, "audit-pool"))
  others = rng.permutation(np.setdiff1d(np.arange(train_size), study_forget))[:size]
  pool = rng.permutation(np.concatenate([study_forget, others]))
  halves = []
  for _ in range(models // 2):
    order = rng.permutation(pool)
    halves += [np.sort(order[:size]), np.sort(order[size:])]
  forget = np.stack(halves + [np.sort(study_forget)] * models)
  retain = np.stack([np.setdiff1d(np.arange(train_size), f) for f in forget])
  return Assignment(models, pool, pool[:examples or len(pool)], forget, retain)
