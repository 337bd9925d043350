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
from typing import Any, NamedTuple

from lur_jax import checkpoint, parallel


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
        self._log(f"{name}: reading {directory}, written by an earlier lur_jax")
      variables = None if abstract is None else checkpoint.restore_model(directory, abstract)[0]
      return Cached(variables, meta, directory)
    return None

  def save(self, name: str, key: str, variables, meta: dict, shared: bool = False) -> None:
    """Stores ``variables`` as ``models/<name>`` with ``meta`` and the fingerprint."""
    save_replacing(self.model_dir(name, shared), variables, {**meta, "fingerprint": key})
