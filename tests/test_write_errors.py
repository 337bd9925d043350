"""A write that the file system refuses (no space, quota, read-only, permission)
ends the run with one line naming the path and the cause, exit code 1, and
leaves --out resumable: the same command then finishes with the same models.

Each kind of write is made to fail by a writer that raises, as a full disk would:
Orbax's checkpoints and model saves (TensorStore reports the OS error inside a
ValueError), the results files, the figures, and JAX's compilation cache
(which costs a warning, never the run)."""

import errno
import json
import os
import tempfile

import orbax.checkpoint as ocp
import pytest
from conftest import SMOKE

from lur_jax import cli

pytestmark = pytest.mark.study  # end to end: the study tier

SETS = ["methods=retrain,lur", "train.epochs=1", "checkpoint.every=4"]
NO_SPACE = os.strerror(errno.ENOSPC)


def _main(out, *sets):
  args = [a for s in (*SETS, *sets) for a in ("--set", s)]
  return cli.main(["run", SMOKE, "--out", str(out), "--no-progress", *args])


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
  out = tmp_path_factory.mktemp("clean")
  assert _main(out) == 0
  return json.loads((out / "results.json").read_text())


def _failing_orbax(where: str, tensorstore_style: bool, succeed_first: int = 0):
  """``CheckpointManager.save`` refusing every save under ``where`` after the first
  ``succeed_first`` of them."""
  real = ocp.CheckpointManager.save
  calls = []

  def save(self, *args, **kwargs):
    if f"{os.sep}{where}{os.sep}" in str(self.directory):
      calls.append(1)
    if len(calls) > succeed_first and f"{os.sep}{where}{os.sep}" in str(self.directory):
      if tensorstore_style:
        raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "x/d/1": Failed to '
                         f"write 179 bytes to file 4: {NO_SPACE} [os_error_code='28']")
      raise OSError(errno.ENOSPC, NO_SPACE)
    return real(self, *args, **kwargs)
  return save


def _failing_mkstemp(suffix_wanted: str):
  real = tempfile.mkstemp

  def mkstemp(*args, **kwargs):
    if kwargs.get("suffix", "").endswith(suffix_wanted):
      raise OSError(errno.ENOSPC, NO_SPACE)
    return real(*args, **kwargs)
  return mkstemp


# What the rerun must say it picked up: the original's training from the checkpoint
# that was written before the refused one (the first checkpoint succeeds, the second
# fails), or from its last checkpoint (its finished model could not be saved), or every
# finished model (the results or the figure failed at the end).
RESUMED_CHECKPOINT = ["original: resuming at step 4 of"]
RESUMED_TRAINING = ["original: resuming at step"]
REUSED_ALL = ["reusing the original model", "reusing the retrain model",
              "lur: finished in an earlier run"]


@pytest.mark.parametrize("kind, target, resumed", [
    ("checkpoint", ("orbax", "checkpoints", True), RESUMED_CHECKPOINT),
    ("checkpoint (OSError)", ("orbax", "checkpoints", False), RESUMED_CHECKPOINT),
    ("model cache", ("orbax", "models", True), RESUMED_TRAINING),
    ("results", ("mkstemp", "results.json", None), REUSED_ALL),
    ("figure", ("mkstemp", ".png", None), REUSED_ALL),
])
def test_a_refused_write_is_one_line_and_the_rerun_resumes(kind, target, resumed, clean,
                                                          tmp_path, monkeypatch, capsys):
  writer, where, tensorstore_style = target
  if writer == "orbax":
    monkeypatch.setattr(ocp.CheckpointManager, "save", _failing_orbax(
        where, tensorstore_style, succeed_first=1 if where == "checkpoints" else 0))
  else:
    monkeypatch.setattr(tempfile, "mkstemp", _failing_mkstemp(where))
  out = tmp_path / "run"
  assert _main(out) == 1, kind
  err = capsys.readouterr().err
  last = err.rstrip("\n").splitlines()[-1]
  assert last.startswith(f"lur-jax: error: cannot write {out}"), err
  assert NO_SPACE in last and "rerun the same command to resume" in last, last
  assert "Traceback" not in err, err
  monkeypatch.undo()
  assert _main(out) == 0, kind
  log = capsys.readouterr().err
  for line in resumed:  # it picked up what was kept instead of starting over
    assert line in log, (kind, line, log)
  rerun = json.loads((out / "results.json").read_text())
  for name, row in clean["methods"].items():
    assert rerun["methods"][name]["params_checksum"] == row["params_checksum"], (kind, name)


def test_an_unwritable_compilation_cache_costs_a_warning(tmp_path, monkeypatch, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  monkeypatch.setenv("LUR_JAX_COMPILATION_CACHE", str(blocker / "cache"))
  assert _main(tmp_path / "run") == 0
  err = capsys.readouterr().err
  assert "warning: compilation cache" in err and "is not writable" in err, err
  assert (tmp_path / "run" / "results.json").is_file()


@pytest.mark.slow
def test_a_full_compilation_cache_costs_one_warning(tmp_path, monkeypatch, capsys):
  # JAX has no public hook for the cache's writes (jax.experimental.compilation_cache
  # exposes set_cache_dir and reset_cache only; entries go through an etils path), so the
  # function that stores an entry is replaced.
  from jax._src import compilation_cache  # pylint: disable=g-import-not-at-top

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, NO_SPACE)
  monkeypatch.setattr(compilation_cache, "put_executable_and_time", full)
  monkeypatch.setenv("LUR_JAX_COMPILATION_CACHE", str(tmp_path / "cache"))
  assert _main(tmp_path / "run") == 0  # an empty cache: every program is stored
  err = capsys.readouterr().err
  assert err.count("the compilation cache cannot be written") == 1, err
  assert NO_SPACE in err and "Traceback" not in err, err
