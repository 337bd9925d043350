"""The model cache of an output folder: fingerprints, one layout, atomic replacement.

Layout: ``models/<name>`` holds the latest model called ``name`` (``original``,
``retrain``, a method, the diffusion judge) and its JSON meta, whose
``fingerprint`` hashes everything that determined the model; a lookup with
another fingerprint misses, and the next save replaces the folder atomically.
An unfinished run keeps its checkpoints in ``checkpoints/<name>-<fingerprint>``.

Folders written before this layout are still read: ``models/<name>-<fingerprint>``
(the original, retrain and the judge) and method folders whose meta has the
fingerprint (the same layout as now).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from typing import Any, NamedTuple

from flax import traverse_util

from lur_jax.training import checkpoint, parallel


def fingerprint(obj) -> str:
  """A 12-hex-digit hash of a JSON-able object (keys sorted)."""
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def remove(path: str) -> None:
  """Deletes a folder (process 0 does it, the others wait)."""
  if parallel.is_writer():
    shutil.rmtree(path, ignore_errors=True)
  parallel.barrier(f"remove {path}")


def save_replacing(directory: str, variables, meta: dict) -> None:
  """Saves a model into ``directory.tmp``, then renames it over ``directory``."""
  tmp = directory + ".tmp"
  remove(tmp)
  checkpoint.save_model(tmp, variables, meta)  # every process takes part
  if parallel.is_writer():
    with checkpoint.writing(directory):
      shutil.rmtree(directory, ignore_errors=True)
      os.replace(tmp, directory)
  parallel.barrier(f"replace {directory}")


class Cached(NamedTuple):
  variables: Any  # None when only the meta was read
  meta: dict
  directory: str  # where it was read from


class Trained(NamedTuple):
  """What a ``train`` callback of :meth:`ModelCache.memoised` returns.

  Attributes:
    variables: the model (``{"params", "model_state"}``).
    meta: JSON-able facts about the run (seconds, steps, a results row).
    keep: save it in the cache (``False``: a run that diverged and must rerun).
    finished: the run is over; its checkpoints are removed.
  """

  variables: Any
  meta: dict
  keep: bool = True
  finished: bool = True


class ModelCache:
  """``models/`` and ``checkpoints/`` of one output folder.

  A study of several variants (TOFU's forget splits) gives each a ``scope``: its
  models go to ``models/<scope>/<name>``, while those every variant shares (the
  original, a pretrained start) are loaded and saved with ``shared=True`` in
  ``models/<name>``.
  """

  def __init__(self, out_dir: str, log=None, scope: str = ""):
    self.out_dir = out_dir
    self.scope = scope
    self._log = log or (lambda msg: None)

  def model_dir(self, name: str, shared: bool = False) -> str:
    if self.scope and not shared:
      return os.path.join(self.out_dir, "models", self.scope, name)
    return os.path.join(self.out_dir, "models", name)

  def checkpoint_dir(self, name: str, key: str) -> str:
    return os.path.join(self.out_dir, "checkpoints", f"{name}-{key}")

  def load(self, name: str, key: str, abstract=None, shared: bool = False) -> Cached | None:
    """The model ``name`` with fingerprint ``key``, or ``None``.

    Without ``abstract`` (the shapes to restore into) only the meta is read.
    """
    for directory, legacy in ((self.model_dir(name, shared), False),
                              (self.model_dir(f"{name}-{key}"), True)):
      meta = checkpoint.restore_meta(directory)
      if meta is None or (not legacy and meta.get("fingerprint") != key):
        continue
      if legacy:
        self._log(f"{name}: reading {directory}, " + (
            "made earlier with these settings" if "fingerprint" in meta
            else "written by an earlier lur_jax"))
      variables = None if abstract is None else checkpoint.restore_model(directory, abstract)[0]
      return Cached(variables, meta, directory)
    return None

  def _changed(self, name: str, key: dict, shared: bool) -> str | None:
    """Where the model of other settings in ``models/<name>`` moves before it is replaced
    (``models/<name>-<its fingerprint>``, which those settings read again), after a line
    naming what changed; ``None`` when there is none."""
    meta = checkpoint.restore_meta(self.model_dir(name, shared))
    if meta is None or "key" not in meta:
      return None
    old, new = (traverse_util.flatten_dict(k, sep=".") for k in (meta["key"], key))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new})
               if old.get(k) != new.get(k)]
    kept = self.model_dir(f"{name}-{meta['fingerprint']}")
    self._log(f"{name}: the settings changed since {self.model_dir(name, shared)} was made ("
              + "; ".join(changed[:4]) + (f"; {len(changed) - 4} more" if len(changed) > 4
                                          else "") + f"); training anew, the earlier model "
              f"moves to {kept}")
    return kept

  def save(self, name: str, key: str, variables, meta: dict, shared: bool = False) -> None:
    """Stores ``variables`` as ``models/<name>`` with ``meta`` and the fingerprint."""
    save_replacing(self.model_dir(name, shared), variables, {**meta, "fingerprint": key})

  def memoised(self, name: str, key: dict, make: Callable[[str], Trained], abstract=None,
               shared: bool = False) -> tuple[Cached, bool]:
    """The model ``name`` that ``key`` determines: from the cache, or trained.

    The one "load from the cache or train" of the library: the original, retrain, every
    method, a pretrained start, the diffusion judge, the audit's and the verdict's
    ensembles all go through it.

    Args:
      name: the model's name (its folder ``models/<name>``).
      key: a JSON-able dict of everything that determines the model; its
        :func:`fingerprint` is the cache key, and it is kept in the meta.
      make: ``checkpoint_dir -> Trained``, run on a miss (it trains the model); it may
        checkpoint into ``checkpoint_dir`` and resume from it.
      abstract: the shapes to restore the variables into (``None``: read only the meta).
      shared: a model every variant of the study shares (see the class).

    Returns:
      ``(Cached, reused)``; a trained model's meta gets ``key`` and ``fingerprint``.
    """
    fp = fingerprint(key)
    cached = self.load(name, fp, abstract, shared=shared)
    if cached is not None:
      return cached, True
    earlier = self._changed(name, key, shared)
    checkpoints = self.checkpoint_dir(name, fp)
    trained = make(checkpoints)
    meta = {**trained.meta, "key": key}
    if trained.keep:
      if earlier is not None and parallel.is_writer():  # kept: the old settings reuse it
        remove(earlier)  # a copy of the same model, if one is there already
        with checkpoint.writing(earlier):
          os.replace(self.model_dir(name, shared), earlier)
      self.save(name, fp, trained.variables, meta, shared=shared)
    if trained.finished:
      remove(checkpoints)
    return Cached(trained.variables, {**meta, "fingerprint": fp},
                  self.model_dir(name, shared)), False

