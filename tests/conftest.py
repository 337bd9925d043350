"""Test-session settings: JAX's persistent compilation cache in a fresh folder.

The command line turns the cache on (in the user's cache folder by default).
The tests keep theirs in a folder of their own, made for the session and
shared with the subprocesses they start, so that the many runs of the same
smoke configs compile each program once.
"""

import os
import tempfile

os.environ.setdefault("LUR_JAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="lur-jax-tests-"))

import lur_jax  # pylint: disable=g-import-not-at-top,wrong-import-position

lur_jax.enable_compilation_cache()
