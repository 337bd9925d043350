"""Data parallelism on 8 simulated CPU devices (each check in a subprocess,
so that the device count is set before JAX starts)."""

import json
import os
import subprocess
import sys

import conftest
import pytest
from conftest import ROOT

_python = conftest.on_devices


def _sharded_records(*args):
  return conftest.json_lines(os.path.join("tests", "sharded_check.py"), *args)


def test_sharded_steps_match_one_device():
  # LUR in every mode on the MLP, exact LUR on the CNN with BatchNorm (on 1 and
  # 8 devices), RL and Scissorhands on 8; the diffusion U-Net (noise drawn per
  # step) with RL: params and BatchNorm stats after 3 steps.
  records = _sharded_records()
  assert len(records) == 4 * 2 + 3
  assert {r["devices"] for r in records} == {1, 8}
  for r in records:
    assert r["max_rel_diff"] < 1e-5, r


@pytest.mark.slow
def test_sharded_steps_match_one_device_on_every_device_count():
  # LUR in every mode on the MLP and the CNN, four other methods on the CNN, LUR
  # and RL on the U-Net.
  records = _sharded_records("--all")
  assert len(records) == 6 * 4 + 4 + 4 + 1
  assert {r["devices"] for r in records} == {1, 2, 4, 8}
  for r in records:
    assert r["max_rel_diff"] < 1e-5, r


def _run(out, *overrides):
  sets = [a for o in overrides for a in ("--set", o)]
  return _python("-m", "lur_jax", "run", os.path.join("configs", "digits_smoke.py"),
                 "--out", str(out), "--no-progress", *sets)


@pytest.mark.slow  # end to end; the steps' equality is test_sharded_steps_match_one_device's
def test_smoke_run_on_four_devices_matches_one(tmp_path):
  results = {}
  for devices in (1, 4):
    proc = _run(tmp_path / f"d{devices}", f"devices={devices}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / f"d{devices}" / "results.json") as f:
      results[devices] = json.load(f)
  assert results[4]["devices"] == {"count": 4, "kind": "cpu", "processes": 1}
  assert results[4]["device"] == "cpu:cpu x4"
  assert set(results[4]["methods"]) == set(results[1]["methods"])
  for name in results[1]["methods"]:  # a method may diverge on the smoke budget, then on both
    assert conftest.examples_apart(results[4], results[1], name) <= 1, name


@pytest.mark.parametrize("devices, message", [
    ("3", "train.batch_size=64 does not divide by devices=3"),
    ("9", "devices=9; allowed: 0 (all) or 1..8"),
    ("-1", "devices=-1; allowed"),
])
def test_bad_device_counts(tmp_path, devices, message):
  proc = _run(tmp_path / "out", f"devices={devices}")
  assert proc.returncode == 2
  assert message in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sets, message", [
    (["mesh.tensor=2"], "mesh.tensor=2: model 'mlp' names no tensor-parallel axes; allowed: "
     "mesh.tensor=1"),
    (["mesh.data=1", "mesh.fsdp=8", "train.batch_size=60"],
     "train.batch_size=60 does not divide by mesh.data × mesh.fsdp=8; allowed: a multiple of 8"),
    (["mesh.data=3", "mesh.fsdp=-1"], "mesh: 8 devices do not divide over 3"),
])
def test_bad_meshes(tmp_path, sets, message):
  proc = _run(tmp_path / "out", *sets)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert not (tmp_path / "out").exists()


def test_an_audit_refuses_sharded_parameters(tmp_path):
  proc = _python("-m", "lur_jax", "audit", os.path.join("configs", "digits_smoke.py"), "--out",
                 str(tmp_path / "out"), "--set", "mesh.data=1", "--set", "mesh.fsdp=8")
  assert proc.returncode == 2
  assert "for an audit; allowed: mesh.fsdp=1 and mesh.tensor=1" in proc.stderr, proc.stderr
  assert not (tmp_path / "out").exists()


def _plan(*args):
  return _python("-m", "lur_jax", "plan", os.path.join("configs", "digits_smoke.py"),
                 "--devices", "8", "--set", "mesh.data=1", "--set", "mesh.fsdp=8", *args)


def test_plan_prints_each_step_and_whether_it_fits():
  fits = _plan("--memory", "1GiB", "--set", "methods=ft,graddiff")
  assert fits.returncode == 0, fits.stderr[-3000:]
  rows = [line for line in fits.stdout.splitlines() if line.startswith("| ft") or
          line.startswith("| graddiff")]
  assert len(rows) == 2 and all(r.endswith("| yes |") for r in rows), fits.stdout
  assert "'fsdp': 8" in fits.stdout
  small = _plan("--memory", "1KiB", "--set", "methods=graddiff")
  assert small.returncode == 0 and "| no |" in small.stdout, small.stdout


@pytest.mark.parametrize("args, message", [
    (["--memory", "lots"], "--memory 'lots'; allowed: a size > 0 like 16GiB"),
    (["--memory", "0GiB"], "--memory '0GiB'; allowed"),
    (["--memory", "1GiB", "--set", "mesh.tensor=3"],
     "mesh: data × fsdp × tensor = 24; allowed: the device count, 8"),
])
def test_plan_refuses_bad_input(args, message):
  proc = _plan(*args)
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# What two processes add to one device's run: jax.distributed, labels drawn for
# the global batch (rl), a trim from the forget gradients and a projected step
# (shs), the lookahead (lur), Orbax saves by every process, one results file.
TWO = "methods=retrain,rl,shs,lur"


def _two_processes(tmp_path, devices_each, sets, single_sets=()):
  """The smoke study on one device and in two processes (``devices_each`` simulated devices
  each) with ``sets``; ``(one, two)`` results, two's metrics checked within one example of
  one's (float reduction order may move an example across a decision boundary)."""
  single = _run(tmp_path / "one", "devices=1", TWO, *single_sets)
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_each}",
         "PYTHONPATH": ROOT}
  sets = [f"distributed.coordinator=127.0.0.1:{port}", "distributed.num_processes=2", TWO,
          *sets]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "lur_jax", "run", os.path.join("configs", "digits_smoke.py"),
       "--out", str(tmp_path / "two"), "--no-progress",
       *[a for o in [*sets, f"distributed.process_id={i}"] for a in ("--set", o)]],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  with open(tmp_path / "one" / "results.json") as f:
    one = json.load(f)
  with open(tmp_path / "two" / "results.json") as f:
    two = json.load(f)
  for name in one["methods"]:
    assert conftest.examples_apart(two, one, name) <= 1, name
  return one, two


def test_two_processes_match_one(tmp_path):
  _, two = _two_processes(tmp_path, 1, ["checkpoint.every=5"])
  assert two["devices"] == {"count": 2, "kind": "cpu", "processes": 2}


SHORT = ["data.train_limit=256", "train.epochs=1"]  # round-off only: see test_sharding.SHORT


@pytest.mark.slow  # two processes of 4 simulated devices each, and a 1-device reference
def test_two_processes_of_four_devices_with_fsdp8_match_one_device(tmp_path):
  """Parameters sharded across processes: each host holds its shards, Orbax writes them."""
  _, two = _two_processes(tmp_path, 4, ["mesh.data=1", "mesh.fsdp=8", "checkpoint.every=3",
                                        *SHORT], SHORT)
  assert two["devices"] == {"count": 8, "kind": "cpu", "processes": 2}
  assert two["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
