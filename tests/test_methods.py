"""SalUn masks, Scissorhands' trim and repair, l1-sparse, and their bad settings."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import SMOKE

from lur_jax import cli, models
from lur_jax.core import losses, methods, saliency, train
from lur_jax.study import config as config_lib
from lur_jax.training import checkpoint


@pytest.fixture(scope="module")
def mlp():
  model = models.build_model("mlp", 10, (8, 8))
  return model, model.init(jax.random.key(0))


def test_select_layers_by_name(mlp):
  _, params = mlp
  chosen = saliency.select_layers(params, "fc,hidden_1")
  assert chosen["fc"] == {"kernel": True, "bias": True}
  assert chosen["hidden_0"] == {"kernel": False, "bias": False}
  assert all(jax.tree.leaves(saliency.select_layers(params, "all")))
  with pytest.raises(ValueError, match="layer 'layer4' matches no parameter; allowed: all, fc"):
    saliency.select_layers(params, ["layer4"])


def test_norm_layers_are_never_selected():
  params = {"conv": {"kernel": jnp.ones(3)}, "BatchNorm_0": {"scale": jnp.ones(3)}}
  chosen = saliency.select_layers(params, "all")
  assert chosen == {"conv": {"kernel": True}, "BatchNorm_0": {"scale": False}}
  with pytest.raises(ValueError, match="matches no parameter"):
    saliency.select_layers(params, "BatchNorm_0")


def test_top_fraction_mask_and_trim(mlp):
  _, params = mlp
  scores = jax.tree.map(lambda p: jnp.abs(p) + 1e-9, params)
  selected = saliency.broadcast_mask(saliency.select_layers(params, "fc,hidden_1"), params)
  mask = saliency.top_fraction_mask(scores, selected, 0.25)
  n_selected = sum(int(m.sum()) for m in jax.tree.leaves(selected))
  n_masked = sum(int(m.sum()) for m in jax.tree.leaves(mask))
  assert abs(n_masked - 0.25 * n_selected) <= 2
  assert not bool(mask["hidden_0"]["kernel"].any())

  fresh = jax.tree.map(lambda p: p + 100.0, params)
  trimmed, reset = saliency.trim(params, fresh, scores, saliency.select_layers(params, "fc"),
                                 sparsity=0.9)
  n_fc = params["fc"]["kernel"].size + params["fc"]["bias"].size
  assert abs(sum(int(r.sum()) for r in jax.tree.leaves(reset)) - 0.1 * n_fc) <= 1
  np.testing.assert_array_equal(trimmed["hidden_0"]["kernel"], params["hidden_0"]["kernel"])
  changed = trimmed["fc"]["kernel"] != params["fc"]["kernel"]
  np.testing.assert_array_equal(changed, reset["fc"]["kernel"])
  # The most salient (largest |θ|) weights are the ones reset.
  assert float(jnp.abs(params["fc"]["kernel"])[changed].min()) >= float(
      jnp.abs(params["fc"]["kernel"])[~changed].max())


def test_forget_gradients_sum_over_padded_batches(mlp):
  model, params = mlp
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(37, 8, 8)).astype(np.float32)
  y = rng.integers(0, 10, 37).astype(np.int32)
  per_example = lambda p, b: losses.cross_entropy(model.apply(p, b["x"]), b["y"])
  got = saliency.forget_gradients(per_example, params, x, y, batch_size=16, absolute=False)
  want = jax.grad(lambda p: per_example(p, {"x": x, "y": y}).sum())(params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5)


def test_masked_updates_freeze_everything_outside_the_mask(mlp):
  _, params = mlp
  mask = jax.tree.map(lambda p: jnp.arange(p.size).reshape(p.shape) % 2 == 0, params)
  tx = optax.chain(train.sgd(0.1, weight_decay=0.1), saliency.masked_updates(mask))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask)):
    assert bool((u[~m] == 0).all()) and bool((u[m] != 0).all())
  # The mask is the transform's state: a step reads it from there (an argument of a compiled
  # step, sharded as the parameters), so a transform without one updates a state that has it.
  state = tx.init(params)
  assert jax.tree.leaves(state[-1].mask) == jax.tree.leaves(mask)
  stateless = optax.chain(train.sgd(0.1, weight_decay=0.1), saliency.masked_updates())
  again, _ = stateless.update(grads, state, params)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(updates)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r"masked_updates\(\): no mask to start from"):
    stateless.init(params)


def test_l1_penalty_decays_linearly_to_zero(mlp):
  _, params = mlp
  tx = train.l1_penalty(optax.linear_schedule(0.5, 0.0, 4))
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  seen = []
  for _ in range(5):
    g, state = tx.update(zeros, state, params)
    seen.append(float(jnp.abs(g["fc"]["kernel"]).max()))
  np.testing.assert_allclose(seen, [0.5, 0.375, 0.25, 0.125, 0.0], atol=1e-7)


def test_shs_repair_never_lowers_the_forget_objective_to_first_order(mlp):
  model, params = mlp
  ctx = methods.Context(model.apply, 10, model.init)
  settings = config_lib.method_settings(config_lib.load(SMOKE), "shs")
  tx = optax.sgd(1.0)
  step = methods.METHODS["shs"].make_step(ctx, settings, tx)
  rng = np.random.default_rng(1)
  def batch(n):
    return {"x": jnp.asarray(rng.uniform(size=(n, 8, 8)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, 10, n), jnp.int32)}
  rb, fb = batch(32), batch(16)
  state = train.init_state(params, tx, jax.random.key(0))
  new_state, _ = step(state, rb, fb)
  direction = jax.tree.map(lambda a, b: a - b, new_state.params, params)  # = −update
  ascent = losses.forget_objective("ga", model.apply, 10)
  g_f = jax.grad(ascent)(params, fb)
  # The step moves along −g with ⟨g, ∇(−CE_f)⟩ ≥ 0, so −CE_f does not rise to first order.
  dot = sum(jnp.vdot(d, g) for d, g in zip(jax.tree.leaves(direction), jax.tree.leaves(g_f)))
  assert float(dot) <= 1e-4


@pytest.mark.study
def test_salun_touches_only_masked_weights_and_shs_trims(tmp_path):
  out = tmp_path / "run"
  assert cli.main(["run", SMOKE, "--out", str(out), "--no-progress", "--set",
                   "methods=retrain,salun,shs,lur_snip,l1_sparse", "--set", "salun.gamma=0.3",
                   "--set", "salun.layers=fc,hidden_1"]) == 0
  results = json.loads((out / "results.json").read_text())
  assert all("UA" in row for row in results["methods"].values())
  original_dir = next(p for p in (out / "models").iterdir() if p.name.startswith("original"))
  model = models.build_model("mlp", 10, (8, 8))
  abstract = {"params": jax.eval_shape(model.init, jax.random.key(0)), "model_state": {}}
  original = checkpoint.restore_model(str(original_dir), abstract)[0]["params"]
  salun = checkpoint.restore_model(str(out / "models" / "salun"), abstract)[0]["params"]
  np.testing.assert_array_equal(salun["hidden_0"]["kernel"], original["hidden_0"]["kernel"])
  # γ = 0.3 of the selected weights (fc and hidden_1, one global ranking) may move.
  selected = {k: v for k, v in original.items() if k in ("fc", "hidden_1")}
  changed = sum(int((a != b).sum()) for a, b in zip(
      jax.tree.leaves({k: salun[k] for k in selected}), jax.tree.leaves(selected)))
  size = sum(leaf.size for leaf in jax.tree.leaves(selected))
  assert 0 < changed <= round(0.3 * size) + 1
  assert (out / "diagnostics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, match", [
    (["--set", "methods=salun", "--set", "salun.gamma=1.5"], "salun.gamma=1.5; allowed: a number in (0, 1)"),
    (["--set", "methods=shs", "--set", "shs.sparsity=0"], "shs.sparsity=0.0"),
    (["--set", "methods=lur_snip", "--set", "lur_snip.sparsity=1"], "lur_snip.sparsity=1.0"),
    (["--set", "methods=shs", "--set", "shs.layers=layer4"], "layer 'layer4' matches no parameter"),
    (["--set", "methods=l1_sparse", "--set", "l1_sparse.alpha=-1"], "l1_sparse.alpha=-1.0"),
])
def test_bad_method_settings_exit_2(args, match, refused):
  refused(["run", SMOKE, *args], match)


@pytest.mark.study  # three steps compiled
def test_the_planner_counts_saluns_mask_a_byte_per_parameter():
  from conftest import SMOKE  # pylint: disable=g-import-not-at-top

  from lur_jax import study  # pylint: disable=g-import-not-at-top
  from lur_jax.study import config as config_lib, plan  # pylint: disable=g-import-not-at-top
  exp = study.prepare(config_lib.apply_overrides(config_lib.load(SMOKE),
                                                 ["methods=rl,salun"])).only()
  rl, salun = (plan.step_bytes(exp, n, exp.settings[n])["argument"] for n in ("rl", "salun"))
  params = jax.eval_shape(exp.model.init, jax.random.key(0))
  assert salun - rl == sum(a.size for a in jax.tree.leaves(params))  # RL's step, plus the mask
