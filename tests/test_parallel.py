"""Data parallelism on 8 simulated CPU devices (each check in a subprocess,
so that the device count is set before JAX starts)."""

import json
import os
import subprocess
import sys

import conftest
import pytest
from conftest import ROOT

pytestmark = pytest.mark.study  # end to end: the study tier

_python = conftest.on_devices


def _sharded_records(*args):
  return conftest.json_lines(os.path.join("tests", "sharded_check.py"), *args)


def test_sharded_steps_match_one_device():
  # On 8 devices: exact LUR on the MLP, RL on the CNN with BatchNorm (global moments, labels
  # drawn for the global batch): params and BatchNorm stats after 3 steps. Every mode, method
  # and the U-Net's per-step noise on 1, 2, 4 and 8 devices: the slow test below.
  records = _sharded_records()
  assert len(records) == 2
  assert {r["devices"] for r in records} == {8}
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
  # SHORT: with the full smoke recipe the original's training drifts apart by round-off
  # (ReLUs that flip, as in test_sharding.SHORT): ft 6 examples apart on 4 devices (measured)
  results = {}
  for devices in (1, 4):
    proc = _run(tmp_path / f"d{devices}", f"devices={devices}", *SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / f"d{devices}" / "results.json") as f:
      results[devices] = json.load(f)
  assert results[4]["devices"] == {"count": 4, "kind": "cpu", "processes": 1}
  assert results[4]["device"] == "cpu:cpu x4"
  assert set(results[4]["methods"]) == set(results[1]["methods"])
  for name in results[1]["methods"]:  # a method may diverge on the smoke budget, then on both
    assert conftest.examples_apart(results[4], results[1], name) <= 1, name


SMOKE = os.path.join("configs", "digits_smoke.py")
PLAN = ["plan", SMOKE, "--devices", "8", "--set", "mesh.data=1", "--set", "mesh.fsdp=8"]
# Bad input on 8 devices: (command line, message); each exits 2 with one line, writes nothing.
REFUSED = {
    "devices=3": (["devices=3"], "train.batch_size=64 does not divide by devices=3"),
    "devices=9": (["devices=9"], "devices=9; allowed: 0 (all) or 1..8"),
    "devices=-1": (["devices=-1"], "devices=-1; allowed"),
    "tensor=2": (["mesh.tensor=2"], "mesh.tensor=2: model 'mlp' names no tensor-parallel axes; "
                 "allowed: mesh.tensor=1"),
    "batch=60": (["mesh.data=1", "mesh.fsdp=8", "train.batch_size=60"],
                 "train.batch_size=60 does not divide by mesh.data × mesh.fsdp=8; allowed: a "
                 "multiple of 8"),
    "data=3": (["mesh.data=3", "mesh.fsdp=-1"], "mesh: 8 devices do not divide over 3"),
}
PLAN_REFUSED = {
    "lots": (["--memory", "lots"], "--memory 'lots'; allowed: a size > 0 like 16GiB"),
    "0GiB": (["--memory", "0GiB"], "--memory '0GiB'; allowed"),
    "tensor=3": (["--memory", "1GiB", "--set", "mesh.tensor=3"],
                 "mesh: data × fsdp × tensor = 24; allowed: the device count, 8"),
}


@pytest.fixture(scope="module")
def on_eight(tmp_path_factory):
  """Every command line of this module's refusals and plans, run in one process on 8 devices:
  ``{name: {"code", "stdout", "stderr", "out_exists"}}``."""
  tmp = tmp_path_factory.mktemp("eight")
  commands = {f"run {k}": ["run", SMOKE, "--out", str(tmp / k), "--no-progress",
                           *conftest.sets(*sets)] for k, (sets, _) in REFUSED.items()}
  commands["audit fsdp=8"] = ["audit", SMOKE, "--out", str(tmp / "audit"), "--set",
                              "mesh.data=1", "--set", "mesh.fsdp=8"]
  commands.update({f"plan {k}": [*PLAN, *args] for k, (args, _) in PLAN_REFUSED.items()})
  commands["plan fits"] = [*PLAN, "--memory", "1GiB", "--set", "methods=ft,graddiff"]
  commands["plan small"] = [*PLAN, "--memory", "1KiB", "--set", "methods=graddiff"]
  proc = subprocess.run([sys.executable, os.path.join("tests", "cli_check.py")], cwd=ROOT,
                        input=json.dumps(list(commands.values())), capture_output=True,
                        text=True, timeout=900, check=False,
                        env={**os.environ, "PYTHONPATH": ROOT,
                             "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return dict(zip(commands, map(json.loads, proc.stdout.splitlines())))


def _one_line_refusal(result, message):
  assert result["code"] == 2, result
  assert message in result["stderr"], result["stderr"]
  assert len(result["stderr"].strip().splitlines()) == 1, result["stderr"]
  assert not result["out_exists"]


@pytest.mark.parametrize("name", REFUSED)
def test_bad_device_counts_and_meshes(on_eight, name):
  _one_line_refusal(on_eight[f"run {name}"], REFUSED[name][1])


def test_an_audit_refuses_sharded_parameters(on_eight):
  _one_line_refusal(on_eight["audit fsdp=8"],
                    "for an audit; allowed: mesh.fsdp=1 and mesh.tensor=1")


def test_plan_prints_each_step_and_whether_it_fits(on_eight):
  fits = on_eight["plan fits"]
  assert fits["code"] == 0, fits["stderr"][-3000:]
  rows = [line for line in fits["stdout"].splitlines() if line.startswith("| ft") or
          line.startswith("| graddiff")]
  assert len(rows) == 2 and all(r.endswith("| yes |") for r in rows), fits["stdout"]
  assert "'fsdp': 8" in fits["stdout"]
  small = on_eight["plan small"]
  assert small["code"] == 0 and "| no |" in small["stdout"], small["stdout"]


@pytest.mark.parametrize("name", PLAN_REFUSED)
def test_plan_refuses_bad_input(on_eight, name):
  _one_line_refusal(on_eight[f"plan {name}"], PLAN_REFUSED[name][1])


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


@pytest.mark.slow
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
