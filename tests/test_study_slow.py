"""Full digits studies (slow: `pytest -q -m slow`)."""

import json
import os

import pytest
from conftest import ROOT

from lur_jax import cli
from lur_jax.study import datasets


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


@pytest.mark.slow
def test_ddpm_digits_rl_and_lur_forget_the_class_and_keep_the_others(tmp_path):
  """configs/ddpm_digits.py (the DDPM verdict's settings, seed 0, a seed they
  were not tuned on): rl and LUR forget class 0 (UA >= 95) and the kept
  classes stay recognisable (kept accuracy >= 80; chance is 11%). Measured:
  rl 97.6 / 99.4, LUR 98.4 / 84.4. Closeness to retraining (FD) is the
  verdict's to judge, over seeds: on seed 0 LUR's FD is 2.04x retrain's."""
  out = tmp_path / "ddpm"
  assert cli.main(["run", os.path.join(ROOT, "configs", "ddpm_digits.py"), "--out", str(out),
                   "--no-progress", "--set", "methods=retrain,rl,lur"]) == 0
  methods = json.loads((out / "results.json").read_text())["methods"]
  for name in ("rl", "lur"):
    assert methods[name]["UA"] >= 95.0, (name, methods[name])
    assert methods[name]["kept_accuracy"] >= 80.0, (name, methods[name])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(os.path.join(datasets.FASHION_MNIST_DIR,
                                                   "t10k-images-idx3-ubyte.gz")),
                    reason="needs Debian's dataset-fashion-mnist")
def test_ddpm_fashion_mnist_runs_at_28x28(tmp_path):
  """The 28×28 path of configs/ddpm_fashion_mnist.py, shrunk to a minute."""
  out = tmp_path / "ddpm_fashion"
  sets = ["data.train_limit=1000", "train.epochs=1", "model.channels=(8, 16, 16)",
          "model.emb_dim=16", "classifier.epochs=1", "eval.forget_samples=8",
          "eval.kept_samples=2", "diffusion.sample_steps=3", "methods=retrain,rl,lur"]
  assert cli.main(["run", os.path.join(ROOT, "configs", "ddpm_fashion_mnist.py"), "--out",
                   str(out), "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
  results = json.loads((out / "results.json").read_text())
  assert set(results["methods"]) == {"retrain", "rl", "lur"}
  assert (out / "samples" / "lur.png").stat().st_size > 1000
