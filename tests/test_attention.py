"""Attention that survives two derivatives: chunked and XLA attention equal the plain one, and
LUR's hvp and exact gradients through them are the plain ones (float64); a fused kernel is
refused for the second-order modes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lur_jax.core import lur
from lur_jax.models import attention, transformer
from lur_jax.tasks import language


def _qkv(seed=0, shape=(2, 13, 3, 4)):
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(rng.normal(size=shape)) for _ in range(3))


@pytest.mark.parametrize("chunk", [1, 4, 5, 13, 64])  # 5 and 4 leave a padded last chunk
def test_chunked_and_xla_equal_plain(chunk):
  with jax.enable_x64(True):
    q, k, v = _qkv()
    want = attention.plain(q, k, v)
    np.testing.assert_allclose(attention.chunked(q, k, v, chunk), want, rtol=0, atol=1e-14)
    # jax.nn.dot_product_attention takes its softmax in float32 whatever the inputs
    np.testing.assert_allclose(attention.attend(q, k, v, "xla"), want, rtol=0, atol=1e-6)
    assert not np.allclose(want[:, 1:], want[:, :1])  # causal: later positions see more


@pytest.mark.parametrize("cached", [False, True])
def test_grouped_attention_at_positions_chunked_and_xla_equal_plain(cached):
  """Grouped-query heads (2 key heads, 3 queries each) at given positions; ``cached``: a
  key-value cache of 11 slots, the 4 queries at positions 5..8 (generation's shapes)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(4)
    t, s = (4, 11) if cached else (7, 7)
    q = jnp.asarray(rng.normal(size=(2, t, 2, 3, 5)))
    k, v = (jnp.asarray(rng.normal(size=(2, s, 2, 5))) for _ in range(2))
    positions = jnp.asarray(np.stack([np.arange(5, 5 + t), np.arange(2, 2 + t)]))
    keys = jnp.broadcast_to(jnp.arange(s), (2, s)) if cached else positions
    want = attention.attend_grouped(q, k, v, positions, keys, "plain")
    assert want.shape == (2, t, 6, 5)
    for chunk in (1, 3, 4, 64):
      np.testing.assert_allclose(attention.attend_grouped(q, k, v, positions, keys, "chunked",
                                                          chunk), want, rtol=0, atol=1e-14)
    np.testing.assert_allclose(attention.attend_grouped(q, k, v, positions, keys, "xla"), want,
                               rtol=0, atol=1e-6)
    # by hand: query head 4 (key head 1) of the first sequence's last query
    last = int(positions[0, -1])
    seen = np.asarray(keys[0]) <= last
    scores = np.asarray(k[0, :, 1]) @ np.asarray(q[0, -1, 1, 1]) / np.sqrt(5)
    weights = np.where(seen, np.exp(scores - scores[seen].max()), 0)
    np.testing.assert_allclose(want[0, -1, 4], weights @ np.asarray(v[0, :, 1]) / weights.sum(),
                               rtol=1e-12)


def _model(impl):
  """A one-layer attention regressor on raw parameters: ``loss(params, batch)``."""
  def loss(params, batch):
    x = batch["x"]
    q, k, v = (jnp.einsum("btd,dhe->bthe", x, params[n]) for n in ("q", "k", "v"))
    out = jnp.einsum("bthe,hed->btd", attention.attend(q, k, v, impl, chunk=3), params["o"])
    return jnp.mean((out - batch["y"]) ** 2)
  return loss


def _problem():
  rng = np.random.default_rng(1)
  params = {n: jnp.asarray(rng.normal(size=(6, 2, 3)) / 3) for n in ("q", "k", "v")}
  params["o"] = jnp.asarray(rng.normal(size=(2, 3, 6)) / 3)
  batch = lambda: {"x": jnp.asarray(rng.normal(size=(2, 8, 6))),
                   "y": jnp.asarray(rng.normal(size=(2, 8, 6)))}
  return params, batch(), batch()


@pytest.mark.parametrize("mode", ["hvp", "exact"])
@pytest.mark.parametrize("impl", ["chunked", "xla"])
def test_lur_second_order_through_attention_equals_plain(mode, impl):
  with jax.enable_x64(True):
    params, retain, forget = _problem()
    def grad(kind):
      loss = _model(kind)
      return lur.lur_value_and_grad(params, retain, forget, retain_loss_fn=loss,
                                    forget_loss_fn=lambda p, b: -loss(p, b), inner_lr=0.5,
                                    inner_steps=2, mode=mode)[1]
    got, want = grad(impl), grad("plain")
    tol = 1e-11 if impl == "chunked" else 1e-5  # xla: a float32 softmax
    for name in params:
      np.testing.assert_allclose(got[name], want[name], rtol=tol, atol=tol / 100)


def test_the_hessian_vector_product_through_chunked_attention_matches_finite_differences():
  with jax.enable_x64(True):
    params, retain, _ = _problem()
    loss = _model("chunked")
    g = lambda p: jax.grad(loss)(p, retain)
    rng = np.random.default_rng(2)
    direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
    _, hv = jax.jvp(g, (params,), (direction,))
    eps = 1e-5
    shifted = lambda s: g(jax.tree.map(lambda a, d: a + s * eps * d, params, direction))
    fd = jax.tree.map(lambda a, b: (a - b) / (2 * eps), shifted(1), shifted(-1))
    for name in params:  # central differences: error O(eps²)
      np.testing.assert_allclose(hv[name], fd[name], rtol=1e-6, atol=1e-8)


def test_the_transformer_runs_chunked_attention_as_plain():
  base = dict(vocab=32, width=16, depth=2, heads=2, seq_len=12)
  tokens = jnp.asarray(np.random.default_rng(3).integers(0, 32, (2, 12)), jnp.int32)
  logits = {}
  for impl in ("plain", "chunked"):
    model = transformer.Transformer(transformer.TransformerConfig(
        **base, attention=impl, attention_chunk=5))
    params = model.init(jax.random.key(0), tokens)
    logits[impl] = model.apply(params, tokens)
  np.testing.assert_allclose(logits["chunked"], logits["plain"], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"model.attention='flash'; allowed: plain, chunked, "
                     "xla, cudnn"):
    transformer.TransformerConfig(attention="flash").check()


def test_a_fused_kernel_is_refused_for_second_order_modes(monkeypatch):
  for mode in ("hvp", "exact"):
    with pytest.raises(ValueError, match=rf"model.attention='cudnn' with lur.mode='{mode}': "
                       "the fused kernel has no second derivative"):
      attention.check_twice_differentiable("cudnn", mode)
  attention.check_twice_differentiable("cudnn", "first_order")
  attention.check_twice_differentiable("chunked", "exact")
  # In the study, on a GPU: LUR in hvp refused, GradDiff let through.
  config = ml_collections.ConfigDict({
      "model": {"name": "transformer", "attention": "cudnn"}, "unlearn": {},
      "lur": {"mode": "hvp"}, "graddiff": {}})
  monkeypatch.setattr(language.jax, "default_backend", lambda: "gpu")
  language.check(config, ["graddiff"], 1)
  with pytest.raises(ValueError, match="with lur.mode='hvp'"):
    language.check(config, ["graddiff", "lur"], 1)
  monkeypatch.setattr(language.jax, "default_backend", lambda: "cpu")
  with pytest.raises(ValueError, match="model.attention='cudnn' on cpu; allowed: a GPU"):
    language.check(config, ["graddiff"], 1)
