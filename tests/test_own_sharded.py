"""A user's own model, sharded: logical names kept from Linen and NNX, own rules, a name no
rule maps refused in one line, and the study on fsdp=8 and tensor=2 × fsdp=4 against one
device (``tests/own_sharded_models.py``)."""

import os
import subprocess
import sys

import conftest
import flax.linen as nn
import jax
import pytest

from lur_jax.study import plugins
from lur_jax.training import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN = "tests.own_sharded_models:"
# Every factory's parameters sharded the same way: the pixels (or embed) over fsdp, the hidden
# units (or mlp) over tensor, the classes whole.
SPECS = {"kernel_in": ("fsdp", "tensor"), "bias_in": ("tensor",), "kernel_out": ("tensor", None),
         "bias_out": (None,)}


@pytest.mark.parametrize("factory", ["linen_library_names", "linen_own", "nnx_own"])
def test_names_and_rules_reach_the_shardings(factory):
  model = plugins.user_model(OWN + factory, 10, (8, 8))
  assert model.partitioned is not None
  params = model.init(jax.random.key(0))
  assert not any(isinstance(leaf, nn.LogicallyPartitioned) for leaf in jax.tree.leaves(
      params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)))  # init: unboxed
  specs = jax.tree.map(lambda s: tuple(s.spec),
                       sharding.model_shardings(model, sharding.make_mesh(fsdp=1, devices=1)))
  (layer_in, layer_out) = (specs[k] for k in sorted(specs))  # Dense_0/hidden, Dense_1/out
  assert (layer_in["kernel"], layer_in["bias"]) == (SPECS["kernel_in"], SPECS["bias_in"])
  assert (layer_out["kernel"], layer_out["bias"]) == (SPECS["kernel_out"], SPECS["bias_out"])


def test_a_name_no_rule_maps_is_one_line_at_start(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "lur_jax", "run", os.path.join("configs", "digits_smoke.py"),
       "--out", str(tmp_path / "out"), "--set", f"model.name={OWN}linen_unmapped",
       "--set", "methods=graddiff,lur"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines() == [
      "lur-jax: error: parameter ['Dense_0']['bias'] names the logical axis 'hidden', which "
      "no sharding rule maps; allowed: act_batch, act_embed, act_vocab, batch, embed, heads, "
      "kv, layers, mlp, vocab, or rules of the model's own (lur_jax.Model(rules=...), "
      "wrap_linen/wrap_nnx(..., rules=...), e.g. (('hidden', 'fsdp'),))"]
  assert not (tmp_path / "out").exists()


SHORT = ["--set", "data.train_limit=256", "--set", "train.epochs=1",
         "--set", "methods=graddiff,lur"]


@pytest.mark.study
@pytest.mark.parametrize("factory, meshes", [("linen_own", ("1,8,1", "1,4,2")),
                                             ("nnx_own", ("1,4,2",))])
def test_an_own_named_model_in_the_study_sharded_matches_one_device(tmp_path, factory, meshes):
  rows = conftest.json_lines(os.path.join("tests", "fsdp_study_check.py"), str(tmp_path),
                             *meshes, *SHORT, "--set", f"model.name={OWN}{factory}")
  assert {r["mesh"] for r in rows} == set(meshes) and len(rows) == 2 * len(meshes)
  for row in rows:  # the bounds of test_sharding's study tests
    assert row["relative"] <= 1e-5 and row["examples"] <= 1, row


@pytest.mark.slow
@pytest.mark.parametrize("factory, meshes", [("linen_library_names", ("1,8,1", "1,4,2")),
                                             ("nnx_own", ("1,8,1",))])
def test_the_other_own_models_and_meshes(tmp_path, factory, meshes):
  test_an_own_named_model_in_the_study_sharded_matches_one_device(tmp_path, factory, meshes)


@pytest.mark.slow  # 23 s; the default suite shards own classifiers, and checks this LM's build
def test_an_own_language_model_in_the_study_sharded_matches_one_device(tmp_path):
  """configs/lm_smoke.py with an own Linen LM by import path, on tensor=2 × fsdp=4."""
  rows = conftest.json_lines(os.path.join("tests", "fsdp_study_check.py"), str(tmp_path),
                             "1,4,2", "--config", "lm_smoke", "--set", "methods=graddiff,lur",
                             "--set", f"model.name={OWN}linen_lm")
  assert len(rows) == 2
  for row in rows:
    assert row["relative"] <= 1e-5 and row["metrics"] <= 1e-5, row


def test_an_own_language_model_is_checked_on_tokens():
  model = plugins.user_lm(OWN + "linen_lm", 64, 16, width=32, depth=2)  # other keys: ignored
  assert model.partitioned is not None and model.rules == (("hidden", "tensor"),)
  with pytest.raises(ValueError, match=r"maps tokens \(2, 16\) to \(2, 10\); allowed: \[batch, "
                     r"tokens, vocab\] = \(2, 16, 64\)"):
    plugins.user_lm(OWN + "classifier_as_lm", 64, 16)
