"""Checkpoints: resuming after SIGKILL is bit-identical, a corrupted
checkpoint falls back to the previous one, divergence stops one method."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.study  # end to end: the study tier

# Saving every two steps makes the LUR run last long enough to be killed mid-run.
SLOW = ["methods=retrain,lur", "lur.epochs=3", "checkpoint.every=2"]


EIGHT_DEVICES = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def _command(out, overrides):
  sets = [a for o in overrides for a in ("--set", o)]
  return [sys.executable, "-m", "lur_jax", "run", os.path.join(ROOT, "configs",
                                                               "digits_smoke.py"),
          "--out", str(out), "--no-progress", *sets]


def _run(out, overrides, env=None):
  proc = subprocess.run(_command(out, overrides), cwd=ROOT, capture_output=True, text=True,
                        timeout=600, check=False, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, "results.json")) as f:
    return json.load(f), proc.stderr


def _checksums(results):
  return {name: row["params_checksum"] for name, row in results["methods"].items()}


def _steps(out, method):
  return sorted(int(os.path.basename(p)) for p in
                glob.glob(os.path.join(out, "checkpoints", f"{method}-*", "[0-9]*"))
                if os.path.basename(p).isdigit())


def _kill_during(out, method, min_steps, overrides=(), env=None):
  """Starts a run and SIGKILLs it once ``method`` has ``min_steps`` checkpoints."""
  proc = subprocess.Popen(_command(out, SLOW + list(overrides)), cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while len(_steps(out, method)) < min_steps:
    assert proc.poll() is None, "the run ended before it could be killed"
    assert time.time() < deadline
    time.sleep(0.01)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(out, "results.json"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run that every resumed one must reproduce."""
  return _run(tmp_path_factory.mktemp("whole"), SLOW)[0]


def test_resume_after_sigkill_is_bit_identical(tmp_path, reference):
  out = tmp_path / "killed"
  _kill_during(out, "lur", 2)
  killed_at = _steps(out, "lur")[-1]
  resumed, log = _run(out, SLOW)
  # It resumes from the newest checkpoint the kill left, or, when the kill left that one
  # unreadable (a warning says so), from the one before it; never from the start.
  resumed_at = re.search(r"lur: resuming at step (\d+) of", log)
  assert resumed_at, log
  unreadable = f"checkpoint step {killed_at} " in log and "unreadable" in log
  assert int(resumed_at[1]) == (_previous(killed_at) if unreadable else killed_at) > 0, log
  assert "reusing the original model" in log
  assert _checksums(resumed) == _checksums(reference)
  assert resumed["methods"]["lur"]["steps"] == reference["methods"]["lur"]["steps"]
  assert not _steps(out, "lur")  # a finished method's checkpoints are removed
  # (a rerun then skips every finished method: test_cli's and test_generative's reruns)


def _previous(step):
  return step - 2  # SLOW saves every two steps


@pytest.mark.slow
def test_corrupted_checkpoint_falls_back_to_the_previous_step(tmp_path, reference):
  out = tmp_path / "killed"
  _kill_during(out, "lur", 3)
  newest = _steps(out, "lur")[-1]
  step_dir = glob.glob(os.path.join(out, "checkpoints", "lur-*", str(newest)))[0]
  for path in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "r+b") as f:  # scramble every file of the state
        f.write(b"\x00garbage\xff" * 4)
  # ... and a step that a kill left half-written (Orbax's temporary folder)
  half = os.path.join(os.path.dirname(step_dir), f"{newest + 2}.orbax-checkpoint-tmp-1")
  os.makedirs(os.path.join(half, "state"))
  with open(os.path.join(half, "state", "manifest.ocdbt"), "wb") as f:
    f.write(b"\x00" * 10)
  resumed, log = _run(out, SLOW)
  assert f"resuming at step {_previous(newest)}" in log
  assert f"checkpoint step {newest}" in log and "unreadable" in log
  assert "falling back to the previous step" in log
  assert _checksums(resumed) == _checksums(reference)


@pytest.mark.slow
def test_resume_on_another_device_count(tmp_path):
  reference, _ = _run(tmp_path / "whole", SLOW + ["devices=1"], EIGHT_DEVICES)
  out = tmp_path / "killed"
  _kill_during(out, "lur", 2, ["devices=1"], EIGHT_DEVICES)
  resumed, log = _run(out, SLOW + ["devices=4"], EIGHT_DEVICES)
  assert "lur: resuming at step" in log
  assert resumed["devices"]["count"] == 4
  for k in ("UA", "RA", "TA", "MIA"):
    assert abs(resumed["methods"]["lur"][k] - reference["methods"]["lur"][k]) <= 0.5, k


FSDP8 = ["devices=8", "mesh.data=1", "mesh.fsdp=8"]


@pytest.mark.slow  # three studies on 8 simulated devices (the restore across meshes is tested
def test_resume_after_sigkill_under_fsdp8_is_bit_identical(tmp_path):  # in test_sharding)
  """A TPU VM is preempted: the sharded run killed mid-LUR resumes to the same bits."""
  reference, _ = _run(tmp_path / "whole", SLOW + FSDP8, EIGHT_DEVICES)
  out = tmp_path / "killed"
  _kill_during(out, "lur", 2, FSDP8, EIGHT_DEVICES)
  resumed, log = _run(out, SLOW + FSDP8, EIGHT_DEVICES)
  assert re.search(r"lur: resuming at step [1-9]\d* of", log), log
  assert resumed["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
  assert _checksums(resumed) == _checksums(reference)


@pytest.mark.slow
def test_an_own_named_model_killed_on_fsdp8_resumes_on_tensor2_fsdp4(tmp_path):
  """A user's model with its own names and rules (tests/own_sharded_models.py): killed
  mid-LUR on fsdp=8, resumed on tensor=2 × fsdp=4 from the checkpoint, as far as a change of
  mesh allows from the uninterrupted fsdp=8 run."""
  own = ["model.name=tests.own_sharded_models:linen_own"]
  reference, _ = _run(tmp_path / "whole", SLOW + FSDP8 + own, EIGHT_DEVICES)
  out = tmp_path / "killed"
  _kill_during(out, "lur", 2, FSDP8 + own, EIGHT_DEVICES)
  tensor = ["devices=8", "mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2"]
  resumed, log = _run(out, SLOW + tensor + own, EIGHT_DEVICES)
  assert re.search(r"lur: resuming at step [1-9]\d* of", log), log
  assert resumed["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2}
  for k in ("UA", "RA", "TA", "MIA"):
    assert abs(resumed["methods"]["lur"][k] - reference["methods"]["lur"][k]) <= 0.5, k


@pytest.mark.slow
def test_divergence_stops_the_method_and_keeps_its_last_good_checkpoint(tmp_path):
  out = tmp_path / "out"
  results, log = _run(out, ["methods=retrain,ga,ft", "ga.lr=1e12", "ga.epochs=20",
                            "checkpoint.every=1"])
  ga = results["methods"]["ga"]
  assert ga["diverged"] is True
  step = ga["diverged_at_step"]
  assert 0 < step < ga["steps"]
  assert f"ga: diverged (non-finite loss or gradient) at step {step}" in log
  assert _steps(out, "ga")[-1] <= step  # the last good checkpoint stays
  assert "UA" in results["methods"]["ft"]  # the other methods still run
  with open(out / "results.md") as f:
    assert "| ga | diverged at step" in f.read()
