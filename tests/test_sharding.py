"""Sharded parameters: the mesh's axes, the rules, the default FSDP rule, the transformer whose
every parameter carries logical names, and the LUR gradient sharded three ways against one
device (8 simulated devices, in a subprocess)."""

import os
from types import SimpleNamespace

import conftest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from lur_jax.models import transformer
from lur_jax.study import plan
from lur_jax.training import sharding

TINY = transformer.TransformerConfig(vocab=64, width=32, depth=2, heads=4, seq_len=16)


def _model(config=TINY):
  model = transformer.Transformer(config)
  init = lambda: model.init(jax.random.key(0), jnp.zeros((1, config.seq_len), jnp.int32))
  return model, init


def test_the_mesh_axes_fill_the_devices():
  assert sharding.mesh_shape(fsdp=-1, devices=8) == {"data": 1, "fsdp": 8, "tensor": 1}
  assert sharding.mesh_shape(data=2, fsdp=-1, devices=8) == {"data": 2, "fsdp": 4, "tensor": 1}
  assert sharding.mesh_shape(data=2, fsdp=2, tensor=2, devices=8)["tensor"] == 2


@pytest.mark.parametrize("axes, match", [
    ({"data": -1, "fsdp": -1}, "mesh.data and mesh.fsdp are both -1"),
    ({"data": 3, "fsdp": 1}, "data × fsdp × tensor = 3; allowed: the device count, 8"),
    ({"data": 3, "fsdp": -1}, "8 devices do not divide over 3"),
    ({"tensor": 0}, "mesh.tensor=0; allowed: an int >= 1, or -1"),
])
def test_a_bad_mesh_is_one_clear_error(axes, match):
  with pytest.raises(ValueError, match=match):
    sharding.mesh_shape(**axes, devices=8)


def test_the_default_fsdp_rule_shards_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((1024, 4096), 8) == P(None, "fsdp")
  assert sharding.fsdp_spec((4096, 1000), 8) == P("fsdp", None)
  assert sharding.fsdp_spec((1001, 999), 8) == P()  # nothing divides
  assert sharding.fsdp_spec((64,), 8) == P()  # small: replicated
  assert sharding.fsdp_spec((1024, 4096), 1) == P()


def test_every_transformer_parameter_has_logical_names_and_the_rules_map_them():
  _, init = _model()
  boxed = jax.eval_shape(lambda: init()["params"])
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
  names = {n for leaf in leaves for n in leaf.names}
  assert names == {"layers", "vocab", "embed", "heads", "kv", "mlp"}
  assert {name for name, _ in sharding.RULES} >= names


def test_a_dimension_that_does_not_divide_is_refused():
  mesh = SimpleNamespace(shape={"data": 1, "fsdp": 8, "tensor": 1})
  box = nn.LogicallyPartitioned(jax.ShapeDtypeStruct((12, 20), jnp.float32), ("embed", "mlp"))
  with pytest.raises(ValueError, match="dimension 12 does not divide over 8 devices"):
    sharding.param_shardings({"w": box}, mesh)


def test_memory_is_argument_plus_output_plus_temp_minus_alias():
  analysis = SimpleNamespace(argument_size_in_bytes=10, output_size_in_bytes=7,
                             temp_size_in_bytes=5, alias_size_in_bytes=6)
  compiled = SimpleNamespace(memory_analysis=lambda: analysis)
  assert sharding.memory_bytes(compiled)["total"] == 16


@pytest.mark.slow
def test_the_transformer_is_causal_and_its_block_remat_changes_nothing():
  model, init = _model()
  params = nn.unbox(init())["params"]
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 16)), jnp.int32)
  apply = jax.jit(model.apply)
  logits = apply({"params": params}, tokens)
  assert logits.shape == (2, 16, 64) and logits.dtype == jnp.float32
  changed = apply({"params": params}, tokens.at[:, 10].set((tokens[:, 10] + 1) % 64))
  np.testing.assert_array_equal(logits[:, :10], changed[:, :10])  # the past ignores the future
  assert not np.allclose(logits[:, 10:], changed[:, 10:])
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  remat = transformer.Transformer(transformer.TransformerConfig(**{**vars(TINY), "remat": "block"}))
  loss_remat = transformer.lm_objective(lambda p, x: remat.apply({"params": p}, x))
  batch = {"x": tokens}
  np.testing.assert_allclose(jax.jit(jax.grad(loss_remat))(params, batch)["embed"]["embedding"],
                             jax.jit(jax.grad(loss))(params, batch)["embed"]["embedding"],
                             rtol=1e-5, atol=1e-7)
  bf16 = transformer.Transformer(transformer.TransformerConfig(**{**vars(TINY), "dtype": "bfloat16"}))
  assert jax.jit(bf16.apply)({"params": params}, tokens).dtype == jnp.float32  # bf16 compute


@pytest.mark.parametrize("field, value, match", [
    ("heads", 3, "model.width=32 with model.heads=3"),
    ("remat", "all", "model.remat='all'; allowed: none, block"),
    ("dtype", "float16", "model.dtype='float16'"),
    ("depth", 0, "model.depth=0; allowed: an int >= 1"),
])
def test_bad_transformer_settings_are_refused(field, value, match):
  with pytest.raises(ValueError, match=match):
    transformer.TransformerConfig(**{**vars(TINY), field: value}).check()


@pytest.mark.study
def test_the_sharded_lur_gradient_matches_one_device():
  """tensor=2 × fsdp=4 with hvp (fsdp=8 in the study test below; every mode on every mesh: the
  slow suite)."""
  rows = _fsdp_check(["hvp", "--mesh", "tensor=2,fsdp=4"])
  assert {r["mesh"] for r in rows} == {"tensor=2,fsdp=4"}
  for row in rows:
    assert row["devices"] == 8 and row["placed"] and row["relative"] <= 1e-5, row


@pytest.mark.slow
def test_every_lur_mode_sharded_matches_one_device():
  for row in _fsdp_check([]):
    assert row["devices"] == 8 and row["placed"] and row["relative"] <= 1e-5, row


def _fsdp_check(modes):
  return _eight_devices("fsdp_check.py", *modes)


def _eight_devices(script, *args):
  return conftest.json_lines(os.path.join("tests", script), *args)


# A study short enough that float round-off is all that can differ (the long smoke study
# drifts by a ReLU that flips at step 53 of the original's training on fsdp=8).
SHORT = ["--set", "data.train_limit=256", "--set", "train.epochs=1"]


def _study_rows(tmp_path, *meshes, methods=()):
  chosen = ["--set", f"methods={','.join(methods)}"] if methods else []
  rows = _eight_devices("fsdp_study_check.py", str(tmp_path), *meshes, *SHORT, *chosen)
  assert {r["mesh"] for r in rows} == set(meshes)
  assert len(rows) == (len(methods) or 10) * len(meshes)  # 10: every method of the config
  return rows


@pytest.mark.study
def test_the_study_sharded_fsdp8_matches_one_device(tmp_path):
  """Retrain, GradDiff and LUR (hvp): the study's sharded path, its checkpoints and results."""
  for row in _study_rows(tmp_path, "1,8,1", methods=("retrain", "graddiff", "lur")):
    assert row["relative"] <= 1e-5 and row["examples"] <= 1, row
    assert row["mesh_recorded"] == {"data": 1, "fsdp": 8, "tensor": 1}


@pytest.mark.slow
def test_every_method_of_the_study_sharded_fsdp8_matches_one_device(tmp_path):
  for row in _study_rows(tmp_path, "1,8,1"):
    assert row["relative"] <= 1e-5 and row["examples"] <= 1, row
    assert row["mesh_recorded"] == {"data": 1, "fsdp": 8, "tensor": 1}


@pytest.mark.slow
def test_every_method_of_the_study_on_data2_fsdp4_matches_one_device(tmp_path):
  for row in _study_rows(tmp_path, "2,4,1"):
    assert row["relative"] <= 1e-5 and row["examples"] <= 1, row


@pytest.mark.study
def test_a_checkpoint_saved_on_fsdp8_restores_on_other_meshes_bit_identically():
  rows = _eight_devices("mesh_checkpoint_check.py")
  assert [r["devices"] for r in rows] == [8, 4, 1]
  for row in rows:
    assert row["identical"] and row["sharded_as_target"] and row["position"] == 7, row


@pytest.mark.parametrize("text, expected", [
    ("16GiB", 16 * 2 ** 30), ("512 MiB", 512 * 2 ** 20), ("80GB", 80 * 10 ** 9),
    ("8e9", 8 * 10 ** 9), ("1.5gib", int(1.5 * 2 ** 30)), ("4096", 4096)])
def test_memory_sizes_parse(text, expected):
  assert plan.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "16 GiBs", "-1GiB", "0", ""])
def test_a_bad_memory_size_is_one_clear_error(text):
  with pytest.raises(ValueError, match=f"--memory {text!r}; allowed: a size > 0 like 16GiB"):
    plan.parse_memory(text)


def test_the_planner_plans_each_distinct_program_once():
  configured = {"mode": "exact", "inner_steps": 1, "remat": False}
  labels = [label for label, _ in plan._variants(["graddiff", "lur"], configured)]
  assert labels[:2] == ["graddiff", "lur"]
  assert "lur mode=exact K=1 remat=off" not in labels  # that is `lur` itself
  assert not any("K=1 remat=on" in x or ("first_order" in x and "remat=on" in x) for x in labels)
  assert len(labels) == len(set(labels)) == 2 + 4 + 5 + 3
  assert [label for label, _ in plan._variants(["graddiff"])] == ["graddiff"]


def test_plan_mesh_option():
  from lur_jax import cli  # pylint: disable=g-import-not-at-top
  assert cli._mesh("fsdp=8") == ["mesh.data=1", "mesh.fsdp=8", "mesh.tensor=1"]
  assert cli._mesh("data=-1,tensor=2") == ["mesh.data=-1", "mesh.tensor=2"]
  assert cli._mesh("") == []
  with pytest.raises(ValueError, match="--mesh 'fsdp=x'; allowed: AXIS=N pairs"):
    cli._mesh("fsdp=x")
