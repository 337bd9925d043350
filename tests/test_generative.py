"""The diffusion study end to end on the smoke config: results, grids, reuse."""

import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import ROOT

from lur_jax import study as study_lib
from lur_jax.core import methods
from lur_jax.study import config as config_lib

pytestmark = pytest.mark.study  # end to end: the study tier

SMOKE = os.path.join(ROOT, "configs", "ddpm_digits_smoke.py")


# Retrain and LUR; every method of a DDPM: tests/test_study_slow.py (the slow suite) and
# benchmarks/checksums.py.
METHODS = ("retrain", "lur")


def _config():
  return config_lib.apply_overrides(config_lib.load(SMOKE), [
      f"methods={','.join(METHODS)}", "train.epochs=1", "classifier.epochs=1",
      "lur.mode=first_order"])  # second-order LUR on the U-Net: the slow suite


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  out = tmp_path_factory.mktemp("ddpm")
  results = study_lib.run(_config(), str(out), progress=False)
  return out, results


def test_results_layout(study):
  out, results = study
  assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
  assert results["config"]["task"] == "diffusion"
  assert results["data"]["forgotten_classes"] == [0]
  assert 0 <= results["classifier"]["test_accuracy"] <= 100
  assert list(results["methods"]) == list(METHODS)
  assert set(METHODS) <= set(methods.for_task("diffusion"))
  for row in [results["original"], *results["methods"].values()]:
    assert 0 <= row["UA"] <= 100 and 0 <= row["kept_accuracy"] <= 100
    assert row["FD"] > 0  # samples are never the real images
    assert sum(row["forgotten_as"].values()) == 20  # eval.forget_samples in the smoke config
    assert set(row["kept_class_accuracy"]) == set(range(1, 10))
  assert results["methods"]["retrain"]["FD_vs_retrain"] == 1.0
  smoke, _, table = (out / "results.md").read_text().split("\n", 2)
  assert smoke.startswith("*smoke: numbers are not meaningful")  # ddpm_digits_smoke says so
  assert table.startswith("| method | UA | kept acc | FD (kept) |")
  assert all(f"| {name} |" in table for name in ["original", *METHODS])


def test_sample_grids_before_and_after(study):
  out, _ = study
  grids = {name: plt.imread(out / "samples" / f"{name}.png") for name in ["original", *METHODS]}
  shapes = {g.shape for g in grids.values()}
  assert len(shapes) == 1, shapes  # one layout: a row per class
  # the unlearned models draw other samples than the original from the same noise
  assert not np.array_equal(grids["original"], grids["lur"])


def test_rerun_reuses_every_model(study):
  """A rerun into the same folder trains nothing: every row is marked reused and read back
  unchanged (determinism across fresh folders is tested in test_cli and test_resume)."""
  out, first = study
  again = study_lib.run(_config(), str(out), progress=False)
  assert again["original"]["reused"]
  for name, row in again["methods"].items():
    assert row["params_checksum"] == first["methods"][name]["params_checksum"], name
    assert row["reused"], name
    assert row["UA"] == first["methods"][name]["UA"], name
