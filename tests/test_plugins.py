"""User models and datasets named by an import path: a Flax NNX model and a
Linen model run the study on digits, a data factory feeds it, and every
broken factory is refused with one line before anything is written."""

import json
import os

import conftest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, SMOKE
from flax import nnx

import lur_jax
from lur_jax import cli
from lur_jax.study import plugins

HERE = __name__  # this module, as the import paths below name it


class NnxMLP(nnx.Module):
  """A two-layer MLP written in Flax NNX."""

  def __init__(self, in_features: int, num_classes: int, hidden: int, *, rngs: nnx.Rngs):
    self.hidden_0 = nnx.Linear(in_features, hidden, rngs=rngs)
    self.fc = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    return self.fc(nnx.relu(self.hidden_0(x)))


def nnx_mlp(num_classes, input_shape, *, rngs, hidden=32):
  return NnxMLP(int(np.prod(input_shape)), num_classes, hidden, rngs=rngs)


class LinenTanh(nn.Module):
  """A Linen module without a ``train`` argument."""

  num_classes: int

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, name="fc")(jnp.tanh(nn.Dense(24, name="hidden_0")(x)))


def linen_tanh(num_classes, input_shape):
  del input_shape
  return LinenTanh(num_classes)


def half_digits(seed):
  """Digits with every other training example: a user dataset."""
  splits = lur_jax.load_digits(seed)
  return splits._replace(train=splits.train.take(np.arange(0, len(splits.train), 2)))


# Broken factories, each refused with one line.
def wrong_width(num_classes, input_shape):
  del num_classes, input_shape
  return lur_jax.MLP(num_classes=3)


def returns_a_string(num_classes, input_shape):
  return "mlp"


def nnx_without_rngs(num_classes, input_shape):
  return NnxMLP(int(np.prod(input_shape)), num_classes, 8, rngs=nnx.Rngs(0))


def needs_a_vector(num_classes, input_shape):
  del input_shape
  return _FixedInput(num_classes)


class _FixedInput(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_classes)(x.reshape((x.shape[0], 7, -1)).sum(-1))


def data_not_splits(seed):
  return np.zeros((4, 8, 8))


def data_bad_labels(seed):
  splits = lur_jax.load_digits(seed)
  return splits._replace(num_classes=5)


def _run(tmp_path, sets):
  out = tmp_path / "run"
  return cli.main(["run", SMOKE, "--out", str(out), "--no-progress", *conftest.sets(*sets)]), out


@pytest.mark.study
def test_an_nnx_model_runs_retrain_graddiff_and_lur_on_digits(tmp_path):
  code, out = _run(tmp_path, [f"model.name={HERE}:nnx_mlp", "methods=retrain,graddiff,lur"])
  assert code == 0
  results = json.loads((out / "results.json").read_text())
  assert list(results["methods"]) == ["retrain", "graddiff", "lur"]
  for name, row in results["methods"].items():
    assert all(0.0 <= row[k] <= 100.0 for k in ("UA", "RA", "TA", "MIA")), (name, row)
  assert results["methods"]["retrain"]["avg_gap"] == 0.0
  assert results["original"]["RA"] > 80.0, "the NNX model did not learn digits"
  # The unlearned models moved away from the original, and LUR differs from GradDiff.
  checksums = {row["params_checksum"] for row in results["methods"].values()}
  assert len(checksums) == 3
  # The parameters are the NNX module's own, by name.
  params = plugins.user_model(f"{HERE}:nnx_mlp", 10, (8, 8)).init(jax.random.key(0))
  assert set(params) == {"hidden_0", "fc"} and params["fc"]["kernel"].shape == (32, 10)


@pytest.mark.study
@pytest.mark.slow
def test_a_linen_model_and_a_data_factory(tmp_path):
  code, out = _run(tmp_path, [f"model.name={HERE}:linen_tanh", f"data.name={HERE}:half_digits",
                              "methods=retrain,ft"])
  assert code == 0
  results = json.loads((out / "results.json").read_text())
  assert results["data"]["train"] == (len(lur_jax.load_digits(0).train) + 1) // 2
  assert results["original"]["RA"] > 80.0


@pytest.mark.parametrize("sets, match", [
    (["model.name=no_such_module_xyz:make"], "cannot import 'no_such_module_xyz'"),
    ([f"model.name={HERE}:missing"], f"{HERE!r} has no callable 'missing'"),
    (["model.name=:make"], "allowed: an import path 'package.module:factory'"),
    ([f"model.name={HERE}:returns_a_string"], "returned str; allowed: a lur_jax.Model"),
    ([f"model.name={HERE}:wrong_width"], "maps inputs (2, 8, 8) to (2, 3)"),
    ([f"model.name={HERE}:nnx_without_rngs"], "returns an NNX module but takes no 'rngs'"),
    ([f"model.name={HERE}:needs_a_vector"], "cannot take inputs of shape (2, 8, 8)"),
    ([f"data.name={HERE}:data_not_splits"], "returned ndarray; allowed: lur_jax.Splits"),
    ([f"data.name={HERE}:data_bad_labels"], "labels span [0, 9]; allowed: 0 .. num_classes"),
])
def test_broken_factories_are_refused_with_one_line(sets, match, refused):
  refused(["run", SMOKE, *conftest.sets(*sets)], match)


def test_the_docs_nnx_example_runs():
  with open(os.path.join(ROOT, "docs", "functional_api.md")) as f:
    text = f.read()
  example = text.split("```python\n# A Flax NNX model", 1)[1].split("```", 1)[0]
  scope = {}
  exec(compile("# A Flax NNX model" + example, "functional_api.md", "exec"), scope)
  value, grads, params = scope["value"], scope["grads"], scope["params"]
  assert value.shape == () and bool(jnp.isfinite(value))
  assert jax.tree.structure(grads) == jax.tree.structure(params)
