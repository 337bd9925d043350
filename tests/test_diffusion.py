"""The DDPM pieces: schedule, objectives, samplers, Fréchet distance, LUR on them."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lur_jax
from lur_jax.models import diffusion
from lur_jax.tasks import diffusion as diffusion_task


def _batch(n=16, shape=(8, 8), seed=0, key=1):
  rng = np.random.default_rng(seed)
  return {"x": jnp.asarray(rng.random((n, *shape)), jnp.float32),
          "y": jnp.asarray(rng.integers(0, 10, n), jnp.int32), "key": jax.random.key(key)}


def test_linear_schedule():
  s = diffusion.linear_schedule(1000)
  assert s.betas.shape == s.alpha_bars.shape == (1000,)
  assert np.all(np.diff(np.asarray(s.alpha_bars)) < 0)
  np.testing.assert_allclose(s.alpha_bars[0], 1 - 1e-4, rtol=1e-6)
  assert float(s.alpha_bars[-1]) < 1e-4  # x_T is (almost) pure noise
  for bad in (1, 2.5, True):
    with pytest.raises(ValueError, match="diffusion.steps"):
      diffusion.linear_schedule(bad)
  with pytest.raises(ValueError, match="beta_start < beta_end"):
    diffusion.linear_schedule(10, 0.1, 0.01)


@pytest.mark.parametrize("shape,channels", [
    ((8, 8), (16, 32)), pytest.param((28, 28), (16, 32, 32), marks=pytest.mark.slow),
    pytest.param((8, 8, 3), (16, 32), marks=pytest.mark.slow)])
@pytest.mark.study
def test_unet_shapes_and_zero_init_output(shape, channels):
  model = diffusion.build_unet(10, shape, channels=channels, emb_dim=32)
  params = jax.jit(model.init)(jax.random.key(0))  # eager init: 8 s of op dispatch
  b = _batch(4, shape)
  out = jax.jit(model.apply)(params, b["x"], jnp.arange(4), b["y"])
  assert out.shape == (4, *shape)
  assert float(jnp.abs(out).max()) == 0.0  # the output conv starts at zero
  with pytest.raises(ValueError, match="inputs of shape"):
    model.apply(params, jnp.zeros((4, 9, 9)), jnp.arange(4), b["y"])


def test_unet_rejects_bad_settings():
  with pytest.raises(ValueError, match="divisible by 4"):
    diffusion.build_unet(10, (10, 10), channels=(16, 32, 32))
  with pytest.raises(ValueError, match="model.channels"):
    diffusion.build_unet(10, (8, 8), channels=(12, 32))


def _spy(params, x, t, y):
  """A toy ε-predictor: one learnable vector per (class + null) label."""
  return jnp.broadcast_to(params["w"][y][:, None, None], x.shape) + 0.0 * t[:, None, None]


def test_noise_objective_is_determined_by_the_key_and_drops_labels():
  s = diffusion.linear_schedule(100)
  params = {"w": jnp.arange(11.0)}
  b = _batch()
  loss = diffusion.noise_objective(_spy, s, 10, p_uncond=0.0)
  assert float(loss(params, b)) == float(loss(params, b))
  assert float(loss(params, b)) != float(loss(params, {**b, "key": jax.random.key(2)}))
  # p_uncond = 1: every label is the null class (10), so only w[10] gets a gradient.
  grad = jax.grad(diffusion.noise_objective(_spy, s, 10, p_uncond=1.0))(params, b)["w"]
  assert np.count_nonzero(np.asarray(grad)) == 1 and grad[10] != 0
  grad = jax.grad(loss)(params, b)["w"]
  assert grad[10] == 0 and np.count_nonzero(np.asarray(grad)) == len(np.unique(b["y"]))


def test_forget_objectives():
  s = diffusion.linear_schedule(100)
  params = {"w": jnp.linspace(-1, 1, 11)}
  b = _batch()
  ga = diffusion.forget_objective("ga", _spy, s, 10)
  plain = diffusion.noise_objective(_spy, s, 10)
  assert float(ga(params, b)) == -float(plain(params, b))
  # rl: only the forget labels' predictions move; the other class is a fixed target.
  b = {**b, "y": jnp.full((16,), 3)}
  rl = diffusion.forget_objective("rl", _spy, s, 10)
  grad = np.asarray(jax.grad(rl)(params, b)["w"])
  assert grad[3] != 0 and np.count_nonzero(grad) == 1
  with pytest.raises(ValueError, match="allowed: ga, rl"):
    diffusion.forget_objective("kl", _spy, s, 10)


def _point_mass_oracle(schedule, target):
  """The exact ε-predictor when every training image is ``target`` (in [0, 1])."""
  x0 = 2.0 * target - 1.0
  def apply(params, x, t, y):
    ab = schedule.alpha_bars[t][:, None, None]
    return (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)
  return apply


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samplers_recover_a_point_mass_exactly(sampler):
  s = diffusion.linear_schedule(200)
  target = jnp.asarray(np.random.default_rng(0).random((8, 8)), jnp.float32)
  labels = jnp.arange(6) % 3
  kw = dict(null_class=3, guidance=2.0)
  if sampler == "ddim":
    fn = functools.partial(diffusion.ddim_sample, steps=20, **kw)
  else:
    fn = functools.partial(diffusion.ddpm_sample, **kw)
  images = jax.jit(lambda k: fn(_point_mass_oracle(s, target), None, s, k, labels, (8, 8)))(
      jax.random.key(0))
  assert images.shape == (6, 8, 8)
  np.testing.assert_allclose(images, jnp.broadcast_to(target, images.shape), atol=2e-4)


def test_frechet_distance():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(4000, 5))
  assert diffusion_task.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
  shift = np.array([1.0, 2.0, 0.0, 0.0, 0.0])
  assert diffusion_task.frechet_distance(a, a + shift) == pytest.approx(5.0, rel=1e-6)
  # b = 3a: μ_b = 3μ_a, Σ_b = 9Σ_a, (Σ_a^½ Σ_b Σ_a^½)^½ = 3Σ_a, so FD = 4‖μ_a‖² + 4 Tr Σ_a.
  expected = 4.0 * np.sum(a.mean(0) ** 2) + 4.0 * np.trace(np.cov(a, rowvar=False))
  assert diffusion_task.frechet_distance(a, 3.0 * a) == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow  # ~60 s; hvp = exact is checked on the MLP and CNN in test_lur.py
def test_lur_hvp_equals_exact_on_the_unet():
  """lur_value_and_grad runs unchanged on the diffusion objectives."""
  model = diffusion.build_unet(10, (8, 8), channels=(16, 32), emb_dim=32)
  params = jax.jit(model.init)(jax.random.key(0))
  # Move off the zero-initialised output layer so that second-order terms are non-zero.
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(3), p.shape),
                        params)
  s = diffusion.linear_schedule(100)
  kw = dict(retain_loss_fn=diffusion.noise_objective(model.apply, s, 10, p_uncond=0.1),
            forget_loss_fn=diffusion.forget_objective("rl", model.apply, s, 10),
            inner_lr=0.5, inner_steps=2)
  retain, forget = _batch(16, key=1), _batch(8, seed=1, key=2)
  grads = {mode: jax.jit(functools.partial(lur_jax.lur_value_and_grad, mode=mode, **kw))(
      params, retain, forget)[1] for mode in ("exact", "hvp", "first_order")}
  def rel(a, b):
    return max(float(jnp.linalg.norm(x - y) / jnp.linalg.norm(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert rel(grads["hvp"], grads["exact"]) < 1e-4
  assert rel(grads["first_order"], grads["exact"]) > 1e-3, "the Hessian term must matter"
