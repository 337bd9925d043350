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

import jax

ENV = "LUR_JAX_COMPILATION_CACHE"
OFF = ("", "off", "0", "false", "no", "none")


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lur_jax", "jax")


def enable(directory: str | None = None, warn=None) -> str | None:
  """Points JAX's persistent compilation cache at ``directory`` (default: the
  environment variable, else :func:`default_dir`); returns the folder in use,
  or ``None`` when it is off or cannot be written (``warn`` says why)."""
  warn = warn or (lambda msg: None)
  if directory is None:
    directory = os.environ.get(ENV, default_dir())
  if directory.strip().lower() in OFF:
    return None
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    warn(f"warning: compilation cache {directory} is not writable ({e.strerror}); "
         f"compiling without it (set {ENV}=off to silence this)")
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
