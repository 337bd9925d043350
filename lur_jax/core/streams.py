"""The random streams of a study, named in one place.

Every run is determined by its config's ``seed``. A run's own integer seed is
:func:`derive_seed` of the config seed and the run's name (``"original"``,
``"retrain"``, a method, ``"classifier"``, an ensemble member); JAX keys are
``fold_in(key(seed), STREAM)`` with one of the constants below, and inside a
step ``fold_in(state.rng, step)`` (big_vision's pattern). Changing a constant
changes every result that draws from its stream.
"""

from __future__ import annotations

import zlib

import jax

#: The init of a model: the original's and retrain's shared start, an ensemble member's.
INIT = 0
#: A method's one-off preparation (SalUn's saliency, Scissorhands' trim).
PREPARE = 1
#: Inside a step: the retain batch's key is ``fold_in(step key, RETAIN)``; the forget
#: batch's is the step key itself.
RETAIN = 1
#: Inside a step: random crop and flip of both batches.
AUGMENT = 0x5EED
#: The diffusion ``rl`` objective's other class, from the batch's key.
RELABEL = 1
#: The diffusion evaluation's sampling noise (the same for every model of a study).
SAMPLES = 0x5A


def derive_seed(seed: int, name: str) -> int:
  """A seed of its own for ``name`` (a method, a model, a data order) under ``seed``."""
  return zlib.crc32(f"{seed}/{name}".encode())


def key(seed: int, stream: int) -> jax.Array:
  """``fold_in(key(seed), stream)``: stream ``stream`` of the run seeded ``seed``."""
  return jax.random.fold_in(jax.random.key(seed), stream)
