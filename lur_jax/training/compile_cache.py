"""JAX's persistent compilation cache, on by default for the command line.

Compilation is most of a small study's wall clock; with the cache a rerun
(even into a fresh ``--out``) loads the compiled programs instead. The cache
lives in ``$XDG_CACHE_HOME/lur_jax/jax`` (``~/.cache/lur_jax/jax``);
``LUR_JAX_COMPILATION_CACHE`` moves it (a folder) or turns it off (``off``).
A cache that cannot be written costs a warning, never a failed run.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "LUR_JAX_COMPILATION_CACHE"
OFF = ("", "off", "0", "false", "no", "none")


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lur_jax", "jax")


def _use(directory: str | None) -> None:
  jax.config.update("jax_compilation_cache_dir", directory)
  if directory is not None:  # small programs too: they are most of a small study's compile time
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  compilation_cache.reset_cache()  # takes effect even after earlier compilations


def enable(directory: str | None = None, warn=None) -> str | None:
  """Points JAX's persistent compilation cache at ``directory``.

  Args:
    directory: a folder, or ``"off"``; default: ``$LUR_JAX_COMPILATION_CACHE``,
      else a folder JAX was already given (``JAX_COMPILATION_CACHE_DIR``), else
      :func:`default_dir`.
    warn: called with one line when the folder cannot be written.

  Returns:
    The folder in use, or ``None`` when the cache is off or cannot be written
    (then programs are compiled as usual).
  """
  warn = warn or (lambda msg: None)
  if directory is None:
    directory = (os.environ.get(ENV) or jax.config.jax_compilation_cache_dir
                 or default_dir())
  if directory.strip().lower() in OFF:
    _use(None)
    return None
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    warn(f"warning: compilation cache {directory} is not writable ({e.strerror}); "
         f"compiling without it (set {ENV}=off to silence this)")
    _use(None)
    return None
  _use(directory)
  _one_warning_for_failed_writes(warn)
  return directory


_JAX_WRITE_WARNING = "Error writing persistent compilation cache entry"


def _one_warning_for_failed_writes(warn) -> None:
  """JAX warns once per program whose cache entry cannot be written (a full
  disk: hundreds of lines); this says it once, through ``warn``, and goes on."""
  show = warnings.showwarning
  if getattr(show, "lur_jax", False):
    return
  said = []

  def showwarning(message, category, filename, lineno, file=None, line=None):
    text = str(message)
    if not text.startswith(_JAX_WRITE_WARNING):
      return show(message, category, filename, lineno, file, line)
    if not said:
      said.append(True)
      warn(f"warning: the compilation cache cannot be written ({text.rsplit(': ', 1)[-1]}); "
           "the run goes on, compiling as usual")
    return None
  showwarning.lur_jax = True
  warnings.showwarning = showwarning
