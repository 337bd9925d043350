"""Block remat that holds for the second derivative (``lur_jax.models.remat``): LUR's gradients
through it equal those without remat, and ``exact``'s second backward pass keeps each block's
inputs, not its internals (XLA's own memory analysis of the compiled step)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lur_jax
from lur_jax.models import remat, transformer

CONFIG = dict(vocab=32, width=16, depth=3, heads=2, seq_len=32, mlp_ratio=8)


def _compiled(mode, remat_kind="block"):
  """LUR's ``(J, ∇J)`` of the transformer, compiled, and its arguments."""
  model = transformer.Transformer(transformer.TransformerConfig(**CONFIG, remat=remat_kind))
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  init = transformer.Transformer(transformer.TransformerConfig(**CONFIG)).init
  params = nn.unbox(jax.jit(init)(jax.random.key(0), jnp.zeros((1, 32), jnp.int32)))["params"]
  rng = np.random.default_rng(0)
  retain, forget = ({"x": jnp.asarray(rng.integers(0, 32, (8, 32)), jnp.int32)} for _ in "rf")
  step = jax.jit(lambda p, r, f: lur_jax.lur_value_and_grad(
      p, r, f, retain_loss_fn=loss, forget_loss_fn=lambda q, b: -loss(q, b), inner_lr=0.1,
      forget_weight=0.3, mode=mode))
  return step.lower(params, retain, forget).compile(), (params, retain, forget)


def _assert_same(got, want):
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(want[1]))
  for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


def test_exact_through_block_remat_keeps_block_inputs_and_equals_no_remat(monkeypatch):
  """Checkpointed once, the second backward pass keeps every block's recomputed internals
  (3 blocks × 8 × 32 × 128 MLP activations, and more); checkpointed twice it keeps their
  inputs (``benchmarks/memory.py`` measures what that saves per model size)."""
  twice, args = _compiled("exact")
  plain, _ = _compiled("exact", "none")
  _assert_same(twice(*args), plain(*args))
  # the block checkpointed a single time: what `remat="block"` was before
  monkeypatch.setattr(remat, "block", lambda module: nn.remat(module, prevent_cse=False))
  once, _ = _compiled("exact")
  temp = lambda c: c.memory_analysis().temp_size_in_bytes
  assert temp(twice) < 0.75 * temp(once), (temp(twice), temp(once))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hvp", "first_order"])
def test_hvp_and_first_order_through_block_remat_equal_no_remat(mode):
  got, args = _compiled(mode)
  want, _ = _compiled(mode, "none")
  _assert_same(got(*args), want(*args))


def test_twice_is_the_function_and_its_derivatives():
  f = lambda x: jnp.sin(x) * x ** 2
  x = jnp.linspace(-1.0, 1.0, 7)
  np.testing.assert_allclose(remat.twice(f)(x), f(x))
  second = lambda g: jax.vmap(jax.grad(jax.grad(g)))(x)
  np.testing.assert_allclose(second(remat.twice(f)), second(f), rtol=1e-6)
