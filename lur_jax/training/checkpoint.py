"""Saving models with Orbax, checksums, and atomic result files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp

from lur_jax.training import parallel


def params_checksum(params) -> str:
  """A fingerprint of a pytree, equal only for bit-identical parameters.

  Args:
    params: any pytree of arrays.

  Returns:
    The hex SHA-256 over every leaf's path, dtype, shape and bytes, in tree order.
  """
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


class WriteError(Exception):
  """A file could not be written (no space, quota, read-only, permission).

  Attributes:
    path: the file or folder that could not be written.
    reason: the operating system's reason.
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f"cannot write {path}: {reason}")
    self.path, self.reason = path, reason


# TensorStore (under Orbax) reports an OS error as a ValueError ending in this.
_TENSORSTORE_OS_ERROR = re.compile(r"\[os_error_code='(\d+)'\]")


def _os_reason(error: BaseException) -> str | None:
  """The OS's reason if ``error`` (or an error it came from) is an OSError."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError):
      return error.strerror or str(error)
    code = _TENSORSTORE_OS_ERROR.search(str(error))
    if code:
      return os.strerror(int(code.group(1)))
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def writing(path: str):
  """Turns an OS error raised while writing ``path`` into a :class:`WriteError`."""
  try:
    yield
  except WriteError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    reason = _os_reason(e)
    if reason is None:
      raise
    raise WriteError(path, reason) from e


def save_model(directory: str, params, meta: dict, step: int = 0) -> None:
  """Saves ``params`` and JSON ``meta`` as step ``step`` of an Orbax manager.

  Orbax writes into a temporary folder and renames it when complete, so a
  killed run never leaves a checkpoint that looks finished.

  Raises:
    WriteError: when the file system refuses the write.
  """
  with writing(directory), ocp.CheckpointManager(
      os.path.abspath(directory), options=ocp.CheckpointManagerOptions(max_to_keep=1)) as manager:
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(params),
                                               meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


def _restore_latest(directory: str, **items):
  """The latest step saved by :func:`save_model` (the named ``items``), or ``None``."""
  if not os.path.isdir(directory):
    return None
  with ocp.CheckpointManager(os.path.abspath(directory)) as manager:
    step = manager.latest_step()
    if step is None:
      return None
    return manager.restore(step, args=ocp.args.Composite(**items))


def restore_model(directory: str, abstract_params):
  """Returns ``(params, meta)`` of the latest step, or ``None`` if there is none."""
  restored = _restore_latest(directory, state=ocp.args.StandardRestore(abstract_params),
                             meta=ocp.args.JsonRestore())
  return None if restored is None else (restored.state, restored.meta)


def restore_meta(directory: str) -> dict | None:
  """The JSON meta of the latest step saved by :func:`save_model`, or ``None``."""
  restored = _restore_latest(directory, meta=ocp.args.JsonRestore())
  return None if restored is None else restored.meta


class RunCheckpoints:
  """The resumable state of one training run, every few steps (Orbax).

  Each step holds the training state (sharded device arrays are saved shard
  by shard and restored onto the shardings of ``like``, so a run saved on one
  mesh resumes on another; a PRNG key is stored as its key data) and JSON
  ``meta`` (position in the data order, metric
  history, seconds so far). Orbax finishes a step by renaming its folder, so
  a kill mid-save leaves no step that looks complete; a step that cannot be
  read back (a corrupted file) is reported, deleted and the previous one used.

  Args:
    directory: the run's checkpoint folder.
    keep: how many of the newest steps to keep.
    warn: ``str -> None`` for the one-line warning about an unreadable step.
  """

  def __init__(self, directory: str, keep: int = 3, warn=None):
    self.directory = os.path.abspath(directory)
    self._warn = warn or (lambda msg: None)
    with writing(self.directory):
      self._manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
          max_to_keep=keep, enable_async_checkpointing=False, create=True))

  def save(self, step: int, state, meta: dict) -> None:
    """Saves one step (raises :class:`WriteError` when the file system refuses)."""
    with writing(self.directory):
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(_storable(state)), meta=ocp.args.JsonSave(meta)))
      self._manager.wait_until_finished()

  def restore(self, like):
    """``(state, meta)`` of the newest readable step, shaped like ``like``; or ``None``."""
    storable = _storable(like)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        a.shape, a.dtype, sharding=a.sharding if isinstance(a, jax.Array) else None), storable)
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        self._warn(f"warning: checkpoint step {step} in {self.directory} is unreadable "
                   f"({type(e).__name__}); falling back to the previous step")
        self._manager.delete(step)
        continue
      return _unstorable(restored.state, like), restored.meta
    return None

  def close(self) -> None:
    self._manager.close()


def _storable(tree):
  """Device arrays stay as they are (each process writes its shards), other
  leaves become numpy; PRNG keys become their key data."""
  def one(a):
    if parallel.is_key(a):
      a = jax.random.key_data(a)
    return a if isinstance(a, jax.Array) else np.asarray(a)
  return jax.tree.map(one, tree)


def _unstorable(tree, like):
  def one(a, ref):
    if parallel.is_key(ref):
      return jax.random.wrap_key_data(a, impl=jax.random.key_impl(ref))
    return a
  return jax.tree.map(one, tree, like)


def write_atomic(path: str, text: str | bytes) -> None:
  """Writes ``text`` (or bytes) to ``path`` through a temporary file and a rename.

  Raises:
    WriteError: when the file system refuses the write (``path`` is left as it was).
  """
  directory = os.path.dirname(os.path.abspath(path))
  with writing(path):
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
      with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
      os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for sharing
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
      raise


def write_json(path: str, obj) -> None:
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
