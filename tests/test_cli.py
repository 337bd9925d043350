"""The command line: bad input is refused cleanly; the smoke study runs end to end."""

import json
import os
import subprocess
import sys

import jax
import pytest
from conftest import ROOT, SMOKE

import lur_jax
from lur_jax import cli
from lur_jax.study import config as config_lib


@pytest.mark.parametrize("args, match", [
    (["--set", "nope=1"], "unknown config key 'nope'"),
    (["--set", "unlearn.nope=1"], "unknown config key 'unlearn.nope'"),
    (["--set", "forget.fraction=0"], "forget.fraction=0.0; allowed: a number in (0, 1)"),
    (["--set", "forget.fraction=1.2"], "forget.fraction=1.2"),
    (["--set", "forget.fraction=0.00001"], "empty forget set"),
    (["--set", "forget.fraction=0.99999"], "forgets all"),
    (["--set", "forget.kind=class", "--set", "forget.classes=11"], "class 11 is not in"),
    (["--set", "forget.kind=indices", "--set", "forget.indices=1,99999"], "out of range"),
    (["--set", "forget.kind=indices", "--set", "forget.indices=3,3"], "is repeated"),
    (["--set", "forget.kind=indices", "--set", "forget.indices="], "forget.indices is empty"),
    (["--set", "methods=lur,magic"], "unknown method 'magic'"),
    (["--set", "unlearn.epochs=-1"], "unlearn.epochs=-1; allowed: an int > 0"),
    (["--set", "unlearn.lr=0"], "unlearn.lr=0.0; allowed: a number > 0"),
    (["--set", "lur.lr=-0.1"], "lur.lr=-0.1; allowed: a number > 0"),
    (["--set", "unlearn.epochs=two"], "unlearn.epochs='two'; allowed: an int"),
    (["--set", "lur.mode=fast"], "lur.mode='fast'"),
    (["--set", "lur.inner_steps=0"], "inner_steps=0"),
    (["--set", "seed"], "allowed: KEY=VALUE"),
    (["--set", "data.name=mnist9"], "data.name='mnist9'"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, match, refused):
  refused(["run", SMOKE, *args], match)


def test_missing_config_and_bad_out(tmp_path, capsys):
  assert cli.main(["run", str(tmp_path / "none.py"), "--out", str(tmp_path / "o")]) == 2
  assert "does not exist" in capsys.readouterr().err
  a_file = tmp_path / "file"
  a_file.write_text("x")
  assert cli.main(["run", SMOKE, "--out", str(a_file)]) == 2
  assert "is a file" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exc:
    cli.main(["run", SMOKE])  # --out is required
  assert exc.value.code == 2


def test_api_raises_value_error():
  config = config_lib.apply_overrides(config_lib.load(SMOKE), ["forget.fraction=2"])
  with pytest.raises(ValueError, match="forget.fraction=2.0"):
    lur_jax.prepare(config)
  with pytest.raises(ValueError, match="unknown config key"):
    config_lib.apply_overrides(config, ["train.epochz=3"])


@pytest.mark.study
def test_entry_points_refuse_bad_input_without_traceback(tmp_path):
  for cmd in ([sys.executable, "-m", "lur_jax"],
              [os.path.join(os.path.dirname(sys.executable), "lur-jax")]):
    proc = subprocess.run([*cmd, "run", SMOKE, "--out", str(tmp_path / "o"), "--set",
                           "methods=nope"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "lur-jax: error: methods: unknown method 'nope'; allowed: "
        + ", ".join(lur_jax.METHODS)]
    assert not (tmp_path / "o").exists()


@pytest.mark.study
def test_smoke_study_end_to_end_and_rerun_reuses_the_original(tmp_path, capsys):
  out = tmp_path / "run"
  assert cli.main(["run", SMOKE, "--out", str(out), "--no-progress"]) == 0
  stdout = capsys.readouterr().out
  smoke, blank, table = stdout.split("\n", 2)
  assert smoke.startswith("*smoke: numbers are not meaningful") and not blank  # says so first
  assert table.startswith("| method | UA | RA | TA | MIA | Avg Gap | seconds |")
  results = json.loads((out / "results.json").read_text())
  assert results["smoke"].startswith("numbers are not meaningful")
  assert set(results) >= {"config", "versions", "device", "methods", "original"}
  assert results["config"]["train"]["epochs"] == 3
  assert list(results["methods"]) == ["retrain", "ft", "ga", "rl", "graddiff", "l1_sparse",
                                      "salun", "shs", "lur", "lur_snip"]
  for name, row in results["methods"].items():
    for key in ("UA", "RA", "TA", "MIA", "avg_gap", "seconds"):
      assert 0.0 <= row[key] <= 100.0 or key == "seconds", (name, key, row[key])
    assert len(row["params_checksum"]) == 64
  assert results["methods"]["retrain"]["avg_gap"] == 0.0
  assert (out / "results.md").read_text().count("\n") == 2 + 2 + 11
  diagnostics = json.loads((out / "diagnostics.json").read_text())
  assert {"graddiff", "lur", "rl", "salun", "shs", "lur_snip"} <= set(diagnostics)
  assert len(diagnostics["lur"]["grad_cosine"]) == results["methods"]["lur"]["steps"]
  assert results["original"]["reused"] is False
  for name in results["methods"]:
    assert (out / "models" / name).is_dir()

  # Same folder, same config: nothing is trained again; every model and row is read back.
  assert cli.main(["run", SMOKE, "--out", str(out), "--no-progress"]) == 0
  again = json.loads((out / "results.json").read_text())
  assert again["original"]["reused"] is True
  for name, row in results["methods"].items():
    assert again["methods"][name]["reused"] is True, name
    assert again["methods"][name]["params_checksum"] == row["params_checksum"], name

  # A fresh folder trains everything again and, the runs being determined by the config
  # and seed, ends on the same parameters (two methods, to keep the test short).
  fresh = tmp_path / "fresh"
  assert cli.main(["run", SMOKE, "--out", str(fresh), "--no-progress",
                   "--set", "methods=retrain,lur"]) == 0
  retrained = json.loads((fresh / "results.json").read_text())
  assert retrained["original"]["reused"] is False
  for name in ("retrain", "lur"):
    assert retrained["methods"][name]["reused"] is False, name
    assert (retrained["methods"][name]["params_checksum"]
            == results["methods"][name]["params_checksum"]), name


def test_readme_api_example_runs():
  text = open(os.path.join(ROOT, "README.md")).read()
  example = text.split("```python\n", 1)[1].split("```", 1)[0]
  scope = {}
  exec(compile(example, "README.md", "exec"), scope)  # pylint: disable=exec-used
  value, grads = scope["value"], scope["grads"]
  assert value.shape == () and bool(jax.numpy.isfinite(value))
  assert jax.tree.structure(grads) == jax.tree.structure(scope["params"])


def test_a_diverging_method_is_marked_and_the_others_still_run(tmp_path, capsys):
  out = tmp_path / "run"
  assert cli.main(["run", SMOKE, "--out", str(out), "--no-progress", "--set",
                   "methods=retrain,ga,ft", "--set", "ga.lr=1e30"]) == 0
  results = json.loads((out / "results.json").read_text())
  assert "diverged_at_step" in results["methods"]["ga"]
  assert "UA" not in results["methods"]["ga"]
  assert "UA" in results["methods"]["ft"]
  assert "diverged" in capsys.readouterr().out


def test_configs_that_are_not_configs_are_one_line(tmp_path, capsys):
  cases = {"README.md": "is not a Python file", "nothere": "a shipped config: cifar100",
           "dict.py": "get_config() returned a dict; allowed: an ml_collections.ConfigDict",
           "broken.py": "failed to import: SyntaxError"}
  (tmp_path / "README.md").write_text("# no\n")
  (tmp_path / "dict.py").write_text("def get_config():\n  return {'seed': 0}\n")
  (tmp_path / "broken.py").write_text("def get_config(:\n")
  for name, match in cases.items():
    path = str(tmp_path / name) if name != "nothere" else name
    assert cli.main(["run", path, "--out", str(tmp_path / "o")]) == 2, name
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], (name, err)
  assert config_lib.resolve("digits_smoke") == os.path.join(ROOT, "configs", "digits_smoke.py")


def test_version_keys_and_help_need_no_jax(capsys):
  assert cli.main(["keys", "checkpoint"]) == 0
  out = capsys.readouterr().out
  assert "checkpoint.every  (default: 500)" in out and "checkpoint.keep" in out
  assert cli.main(["keys", "nope"]) == 2
  assert "no such section; allowed:" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exc:
    cli.main(["--version"])
  assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"lur-jax {lur_jax.__version__}"
  probe = ("import sys, lur_jax.cli\n"
           "try:\n  lur_jax.cli.main(['--help'])\nexcept SystemExit:\n  pass\n"
           "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
  proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                        check=True)
  assert proc.stdout.strip().splitlines()[-1] == "[]"  # nothing heavy imported


@pytest.mark.study
def test_ctrl_c_is_one_line_and_exit_130_and_the_rerun_resumes(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "o")
  cmd = [sys.executable, "-m", "lur_jax", "run", SMOKE, "--out", out, "--set",
         "checkpoint.every=5", "--set", "train.epochs=200"]
  proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while time.time() < deadline and not any(
      "commit_success.txt" in names for _, _, names in os.walk(out)):
    time.sleep(0.2)  # until the original has written a checkpoint
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  lines = [line for line in err.strip().splitlines() if line.strip()]
  assert "Traceback" not in err
  assert lines[-1].startswith("lur-jax: interrupted at original step ") and lines[-1].endswith(
      "; rerun the same command to resume"), lines[-1]
  again = subprocess.Popen([*cmd, "--no-progress"], stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, text=True)
  try:
    first = again.stderr.readline()
    while first and "resuming" not in first:
      first = again.stderr.readline()
    assert first.startswith("original: resuming at step "), first
  finally:
    again.kill()
    again.communicate()
