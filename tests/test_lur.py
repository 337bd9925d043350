"""The LUR gradient: closed forms, autodiff checks, mode equivalences, tracing."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import lur_jax
from lur_jax import models
from lur_jax.core import losses, train

MODES = ("exact", "hvp", "first_order")


# ---------------------------------------------------------------- quadratics
# L(θ) = ½ θᵀAθ − cᵀθ, so ∇L = Aθ − c and the Hessian is A. With M = I − αA_look
# the virtual steps give θ_K = M^K θ + Σ_{j<K} M^j α c_look, and
#   exact / hvp:  ∇J = w_look (A_look θ − c_look) + w_target M^K (A_target θ_K − c_target)
#   first_order:  ∇J = w_look (A_look θ − c_look) + w_target (A_target θ_K − c_target)

def _flat(params):
  return jnp.concatenate([params["a"], params["b"]])


def _quadratic(params, batch):
  theta = _flat(params)
  return 0.5 * theta @ batch["A"] @ theta - batch["c"] @ theta


def _quadratic_problem(seed):
  rng = np.random.default_rng(seed)
  def sym(scale):
    m = rng.normal(size=(5, 5))
    return scale * (m @ m.T / 5 + np.eye(5))
  params = {"a": jnp.asarray(rng.normal(size=3)), "b": jnp.asarray(rng.normal(size=2))}
  retain = {"A": jnp.asarray(sym(1.0)), "c": jnp.asarray(rng.normal(size=5))}
  forget = {"A": jnp.asarray(-sym(0.5)), "c": jnp.asarray(rng.normal(size=5))}  # concave, like GA
  return params, retain, forget


def _closed_form(params, retain, forget, *, alpha, k, lookahead, w_r, w_f, mode):
  look, target = (retain, forget) if lookahead == "retain" else (forget, retain)
  w_look, w_target = (w_r, w_f) if lookahead == "retain" else (w_f, w_r)
  theta = np.asarray(_flat(params))
  m = np.eye(5) - alpha * np.asarray(look["A"])
  mk = np.linalg.matrix_power(m, k)
  theta_k = mk @ theta + sum(np.linalg.matrix_power(m, j) for j in range(k)) @ (
      alpha * np.asarray(look["c"]))
  look_grad = np.asarray(look["A"]) @ theta - np.asarray(look["c"])
  target_grad = np.asarray(target["A"]) @ theta_k - np.asarray(target["c"])
  value = (w_look * (0.5 * theta @ look["A"] @ theta - look["c"] @ theta)
           + w_target * (0.5 * theta_k @ target["A"] @ theta_k - target["c"] @ theta_k))
  if mode == "first_order":
    return value, w_look * look_grad + w_target * target_grad
  return value, w_look * look_grad + w_target * mk.T @ target_grad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("lookahead", ["retain", "forget"])
def test_quadratic_closed_form(mode, k, lookahead):
  with jax.enable_x64(True):
    params, retain, forget = _quadratic_problem(seed=k)
    kw = dict(inner_lr=0.15, inner_steps=k, lookahead=lookahead, retain_weight=0.7,
              forget_weight=1.3)
    value, grad = lur_jax.lur_value_and_grad(
        params, retain, forget, retain_loss_fn=_quadratic, forget_loss_fn=_quadratic,
        mode=mode, **kw)
    want_value, want_grad = _closed_form(params, retain, forget, alpha=0.15, k=k,
                                         lookahead=lookahead, w_r=0.7, w_f=1.3, mode=mode)
    assert grad["a"].dtype == jnp.float64
    np.testing.assert_allclose(value, want_value, rtol=1e-12,
                               err_msg="J(θ) differs from the closed form")
    np.testing.assert_allclose(_flat(grad), want_grad, rtol=1e-10, atol=1e-12,
                               err_msg=f"∇J ({mode}) differs from the closed form")
    loss = lur_jax.lur_loss(params, retain, forget, retain_loss_fn=_quadratic,
                            forget_loss_fn=_quadratic, **kw)
    np.testing.assert_allclose(loss, want_value, rtol=1e-12)


@pytest.mark.study
def test_check_grads_of_lur_loss():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(4, 6)) * 0.5),
              "w2": jnp.asarray(rng.normal(size=(6, 3)) * 0.5)}

    def apply(p, x):
      return jnp.tanh(x @ p["w1"]) @ p["w2"]

    def batch(n):
      return {"x": jnp.asarray(rng.normal(size=(n, 4))),
              "y": jnp.asarray(rng.integers(0, 3, size=n))}

    retain, forget = batch(8), batch(5)
    f = functools.partial(
        lur_jax.lur_loss, retain_batch=retain, forget_batch=forget,
        retain_loss_fn=losses.ce_objective(apply),
        forget_loss_fn=losses.forget_objective("ga", apply, 3), inner_lr=0.3, inner_steps=2)
    check_grads(f, (params,), order=2, modes=["rev"])


# ---------------------------------------------------------------- MLP on digits-shaped data

def _mlp_problem(seed=0):
  model = models.build_model("mlp", 10, (8, 8))
  params = model.init(jax.random.key(seed))
  rng = np.random.default_rng(seed)
  def batch(n):
    return {"x": jnp.asarray(rng.uniform(size=(n, 8, 8)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, 10, size=n), jnp.int32)}
  kw = dict(retain_loss_fn=losses.ce_objective(model.apply),
            forget_loss_fn=losses.forget_objective("ga", model.apply, 10))
  return params, batch(32), batch(16), kw


def _max_rel_diff(a, b):
  return max(float(jnp.linalg.norm(x - y) / jnp.linalg.norm(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("lookahead", ["retain", "forget"])
def test_hvp_matches_exact_on_mlp(k, lookahead):
  params, retain, forget, kw = _mlp_problem()
  kw = dict(kw, inner_lr=0.5, inner_steps=k, lookahead=lookahead, forget_weight=0.5)
  v_exact, g_exact = jax.jit(functools.partial(lur_jax.lur_value_and_grad, mode="exact",
                                               **kw))(params, retain, forget)
  v_hvp, g_hvp = jax.jit(functools.partial(lur_jax.lur_value_and_grad, mode="hvp",
                                           **kw))(params, retain, forget)
  np.testing.assert_allclose(v_hvp, v_exact, rtol=1e-6)
  diff = _max_rel_diff(g_hvp, g_exact)
  assert diff < 1e-5, f"hvp and exact gradients differ by {diff:.2e} (relative, per leaf)"


@pytest.mark.study
def test_first_order_drops_a_nonzero_hessian_term():
  params, retain, forget, kw = _mlp_problem()
  kw = dict(kw, inner_lr=0.5)
  def value_and_grad(mode, **extra):
    return jax.jit(functools.partial(lur_jax.lur_value_and_grad, mode=mode, **kw, **extra))(
        params, retain, forget)
  v_exact, g_exact = value_and_grad("exact")
  v_fo, g_fo = value_and_grad("first_order")
  np.testing.assert_allclose(v_fo, v_exact, rtol=1e-6, err_msg="values must agree")
  assert _max_rel_diff(g_fo, g_exact) > 1e-3, "first_order should differ from exact"
  # With α = 0 the lookahead is the identity and every mode is plain ∇(L_r + L_u).
  kw["inner_lr"] = 0.0
  _, g_zero = value_and_grad("exact")
  plain = jax.grad(lambda p: kw["retain_loss_fn"](p, retain) + kw["forget_loss_fn"](p, forget))(
      params)
  assert _max_rel_diff(g_zero, plain) < 1e-6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lookahead", ["retain", "forget"])
def test_remat_gives_the_same_gradient(mode, lookahead):
  params, retain, forget, kw = _mlp_problem()
  kw = dict(kw, inner_lr=0.5, inner_steps=3, lookahead=lookahead)
  v, g = lur_jax.lur_value_and_grad(params, retain, forget, mode=mode, **kw)
  v_remat, g_remat = lur_jax.lur_value_and_grad(params, retain, forget, mode=mode, remat=True,
                                                **kw)
  np.testing.assert_allclose(v_remat, v, rtol=1e-5)  # float32 loop vs unrolled order
  assert _max_rel_diff(g_remat, g) < 1e-6


@pytest.mark.parametrize("mode", ["exact", "hvp"])
@pytest.mark.slow
def test_remat_bounds_memory_in_k(mode):
  """XLA's own memory analysis: with remat, K = 4 needs at most 25% more than K = 1."""
  model = models.build_model("cnn", 10, (28, 28))
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = lambda n: {"x": jnp.asarray(rng.normal(size=(n, 28, 28)), jnp.float32),
                     "y": jnp.asarray(rng.integers(0, 10, n))}
  retain, forget = batch(64), batch(32)
  kw = dict(retain_loss_fn=losses.ce_objective(model.apply),
            forget_loss_fn=losses.forget_objective("ga", model.apply, 10), inner_lr=0.1,
            mode=mode)
  def temp_bytes(k, remat):
    fn = functools.partial(lur_jax.lur_value_and_grad, inner_steps=k, remat=remat, **kw)
    compiled = jax.jit(fn).lower(params, retain, forget).compile()
    return compiled.memory_analysis().temp_size_in_bytes
  base = temp_bytes(1, False)
  assert temp_bytes(4, True) <= 1.25 * base
  assert temp_bytes(4, False) > 1.25 * base, "without remat K = 4 keeps more: else the test is void"


def test_inputs_are_not_mutated_and_structure_is_kept():
  params, retain, forget, kw = _mlp_problem()
  before = jax.tree.map(np.array, (params, retain, forget))
  for mode in MODES:
    _, grad = lur_jax.lur_value_and_grad(params, retain, forget, mode=mode, inner_lr=0.5, **kw)
    chex.assert_trees_all_equal_shapes_and_dtypes(grad, params)
    chex.assert_tree_all_finite(grad)
  chex.assert_trees_all_equal((params, retain, forget), before)


@pytest.mark.parametrize("bad, match", [
    (dict(mode="second"), "mode='second'"),
    (dict(lookahead="both"), "lookahead='both'"),
    (dict(inner_steps=0), "inner_steps=0"),
])
def test_bad_arguments_raise_value_error(bad, match):
  params, retain, forget, kw = _mlp_problem()
  with pytest.raises(ValueError, match=match):
    lur_jax.lur_value_and_grad(params, retain, forget, **dict(dict(kw, inner_lr=0.1), **bad))


@pytest.mark.parametrize("mode", MODES)
def test_lur_step_compiles_once(mode):
  chex.clear_trace_counter()
  params, retain, forget, kw = _mlp_problem()
  tx = train.sgd(0.01)
  step = train.lur_step(tx, inner_lr=0.5, mode=mode, **kw)
  traced = jax.jit(chex.assert_max_traces(step, n=1), donate_argnums=0)
  state = train.init_state(params, tx, jax.random.key(0))
  _, retain2, forget2, _ = _mlp_problem(seed=1)
  for r, f in [(retain, forget), (retain2, forget2), (retain, forget2)]:
    state, metrics = traced(state, r, f)
  assert int(state.step) == 3
  assert set(metrics) == {"loss", "grad_norm", "lookahead_loss", "target_loss", "retain_loss",
                          "forget_loss", "grad_cosine"}
  assert -1.0 <= float(metrics["grad_cosine"]) <= 1.0


def test_lur_step_metrics_match_direct_computation():
  params, retain, forget, kw = _mlp_problem()
  tx = train.sgd(0.01, weight_decay=0.0, momentum=0.0)
  state = train.init_state(params, tx, jax.random.key(0))
  new_state, m = train.lur_step(tx, inner_lr=0.5, **kw)(state, retain, forget)
  value, grad = lur_jax.lur_value_and_grad(params, retain, forget, inner_lr=0.5, **kw)
  np.testing.assert_allclose(m["loss"], value, rtol=1e-6)
  np.testing.assert_allclose(m["retain_loss"], kw["retain_loss_fn"](params, retain), rtol=1e-6)
  np.testing.assert_allclose(m["forget_loss"], kw["forget_loss_fn"](params, forget), rtol=1e-6)
  g_r = jax.grad(kw["retain_loss_fn"])(params, retain)
  g_f = jax.grad(kw["forget_loss_fn"])(params, forget)
  flat_r = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g_r)])
  flat_f = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g_f)])
  cos = flat_r @ flat_f / (jnp.linalg.norm(flat_r) * jnp.linalg.norm(flat_f))
  np.testing.assert_allclose(m["grad_cosine"], cos, rtol=1e-5, atol=1e-6)
  # Plain SGD: θ' = θ − lr ∇J.
  want = jax.tree.map(lambda p, g: p - 0.01 * g, params, grad)
  chex.assert_trees_all_close(new_state.params, want, rtol=1e-6, atol=1e-7)


@pytest.mark.study
def test_hvp_matches_exact_on_cnn():
  model = models.build_model("cnn", 10, (8, 8))
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  retain = {"x": jnp.asarray(rng.uniform(size=(16, 8, 8)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
  forget = {"x": jnp.asarray(rng.uniform(size=(8, 8, 8)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  kw = dict(retain_loss_fn=losses.ce_objective(model.apply),
            forget_loss_fn=losses.forget_objective("rl", model.apply, 10), inner_lr=0.5)
  forget["key"] = jax.random.key(1)
  grads = {mode: jax.jit(functools.partial(lur_jax.lur_value_and_grad, mode=mode, **kw))(
      params, retain, forget)[1] for mode in ("exact", "hvp")}
  assert set(params) == {"conv_0", "conv_1", "hidden_0", "fc"}
  assert _max_rel_diff(grads["hvp"], grads["exact"]) < 1e-5
