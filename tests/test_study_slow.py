"""Full digits studies (slow: `pytest -q -m slow`)."""

import json
import os

import pytest

from lur_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_full_random_study_runs_every_method(tmp_path):
  out = tmp_path / "random"
  assert cli.main(["run", os.path.join(ROOT, "configs", "digits.py"), "--out", str(out),
                   "--no-progress"]) == 0
  methods = json.loads((out / "results.json").read_text())["methods"]
  assert list(methods) == ["retrain", "ft", "ga", "rl", "graddiff", "l1_sparse", "salun",
                           "shs", "lur", "lur_snip"]
  assert all("UA" in row for row in methods.values()), "a method diverged"


@pytest.mark.slow
def test_class_wise_lur_forgets_the_class_and_keeps_the_rest(tmp_path):
  out = tmp_path / "class"
  assert cli.main(["run", os.path.join(ROOT, "configs", "digits_class.py"), "--out", str(out),
                   "--no-progress", "--set", "methods=retrain,lur"]) == 0
  methods = json.loads((out / "results.json").read_text())["methods"]
  lur, retrain = methods["lur"], methods["retrain"]
  assert lur["UA"] >= 99.0, lur
  assert abs(lur["TA"] - retrain["TA"]) <= 2.0, (lur, retrain)
  assert abs(lur["RA"] - retrain["RA"]) <= 2.0, (lur, retrain)
