"""What the tests share: paths, the smoke configs, the bad-input check, runs on simulated
devices, and the bound that compares two studies in examples; JAX's persistent compilation
cache in a fresh folder.

The tiers (``pyproject.toml`` declares the markers, ``docs/development.md`` the commands):

- ``pytest -m unit``: closed forms, shapes, single steps, bad input; no study, no subprocess.
- ``pytest -q`` (the README's command): the unit tier and one end-to-end study per task, with
  every equivalence check (sharded = one device, resumed = uninterrupted, hvp = exact).
- ``pytest -m slow``: the rest (longer studies, every device count, every method).

A test is in the unit tier unless it is marked ``study`` or ``slow``.

The command line turns the compilation cache on (in the user's cache folder by default). The
tests keep theirs in a folder of their own, made for the session and shared with the
subprocesses they start, so that the many runs of the same smoke configs compile each program
once.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("LUR_JAX_COMPILATION_CACHE", tempfile.mkdtemp(prefix="lur-jax-tests-"))

import lur_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

lur_jax.enable_compilation_cache()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_path(name: str) -> str:
  """The path of ``configs/<name>.py``."""
  return os.path.join(ROOT, "configs", f"{name}.py")


SMOKE = config_path("digits_smoke")
DDPM_SMOKE = config_path("ddpm_digits_smoke")
LM_SMOKE = config_path("lm_smoke")
TOFU_SMOKE = config_path("tofu_smoke")


def pytest_collection_modifyitems(items):
  """Everything not marked ``study`` or ``slow`` is in the ``unit`` tier."""
  for item in items:
    if not any(item.get_closest_marker(m) for m in ("study", "slow")):
      item.add_marker(pytest.mark.unit)


def sets(*overrides: str) -> list[str]:
  """``["--set", o1, "--set", o2, ...]``."""
  return [a for o in overrides for a in ("--set", o)]


@pytest.fixture
def refused(tmp_path, capsys):
  """``refused(argv, match)``: ``lur-jax ARGV --out <tmp>/out`` exits 2, prints one line on
  stderr that starts ``lur-jax: error:`` and contains ``match``, and writes nothing."""

  def check(argv: list[str], match: str) -> str:
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    assert cli.main([*argv[:2], "--out", str(out), "--no-progress", *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lur-jax: error: "), err
    assert match in err, err
    assert not out.exists() and set(tmp_path.iterdir()) == before
    return err
  return check


def on_devices(*args: str, devices: int = 8, timeout: int = 1200) -> subprocess.CompletedProcess:
  """``python ARGS`` in the repository root with ``devices`` simulated CPU devices (set
  before JAX starts, hence a subprocess)."""
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout, check=False)


def json_lines(*args: str, devices: int = 8) -> list[dict]:
  """The JSON lines that ``python ARGS`` prints on ``devices`` simulated devices."""
  proc = on_devices(*args, devices=devices)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [json.loads(line) for line in proc.stdout.splitlines()]


#: The set each classification metric counts its examples in.
METRIC_SETS = {"UA": "forget", "MIA": "forget", "RA": "retain", "TA": "test"}


def examples_apart(a: dict, b: dict, method: str) -> float:
  """How many examples two studies' ``results.json`` differ by on ``method``'s worst
  classification metric: a percentage point difference on a set of n examples is n / 100
  examples, so a bound in examples does not depend on which side of a rounding one falls."""
  row_a, row_b = a["methods"][method], b["methods"][method]
  return max((abs(row_a[k] - row_b[k]) * b["data"][s] / 100 for k, s in METRIC_SETS.items()
              if k in row_a and k in row_b), default=0.0)
