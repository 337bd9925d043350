"""Saving models with Orbax, checksums, and atomic result files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp


def params_checksum(params) -> str:
  """SHA-256 over every leaf's path, dtype, shape and bytes, in tree order."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def save_model(directory: str, params, meta: dict, step: int = 0) -> None:
  """Saves ``params`` and JSON ``meta`` as step ``step`` of an Orbax manager.

  Orbax writes into a temporary folder and renames it when complete, so a
  killed run never leaves a checkpoint that looks finished.
  """
  with ocp.CheckpointManager(os.path.abspath(directory),
                             options=ocp.CheckpointManagerOptions(max_to_keep=1)) as manager:
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(params),
                                               meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def restore_model(directory: str, abstract_params):
  """Returns ``(params, meta)`` of the latest step, or ``None`` if there is none."""
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(os.path.abspath(directory)) as manager:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore()))
  return restored.state, restored.meta


def write_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file and a rename."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_json(path: str, obj) -> None:
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
