"""Class-conditional DDPM: a compact U-Net, the noise-prediction objectives for
retaining and forgetting classes, and DDPM / DDIM samplers with
classifier-free guidance.

Images live in [0, 1] (as :mod:`lur_jax.core.data` loads them) and are scaled to
[−1, 1] inside the objectives; the samplers return [0, 1]. The label
``num_classes`` is the null class of classifier-free guidance.

The objectives are ``(params, batch) -> scalar`` like the classification
ones, so the unlearning methods and :func:`lur_jax.lur_value_and_grad` use
them unchanged. Their randomness (timesteps, noise, dropped labels) comes
from ``batch["key"]``, which the training step folds in: the LUR lookahead
and the target loss see the same noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lur_jax import models
from lur_jax.core import losses, streams

DIFFUSION_FORGET_OBJECTIVES = ("ga", "rl")
SAMPLERS = ("ddim", "ddpm")


class Schedule(NamedTuple):
  """The forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), t = 0 … T−1.

  Attributes:
    betas: ``[T]`` noise variances β_t.
    alpha_bars: ``[T]`` cumulative products ᾱ_t of 1 − β.
  """

  betas: jax.Array
  alpha_bars: jax.Array


def linear_schedule(steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> Schedule:
  """Ho et al.'s linear β schedule.

  Args:
    steps: T, at least 2.
    beta_start, beta_end: β_0 and β_{T−1}, 0 < beta_start < beta_end < 1.

  Returns:
    A :class:`Schedule`.
  """
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
    raise ValueError(f"diffusion.steps={steps!r}; allowed: an int >= 2")
  if not 0 < beta_start < beta_end < 1:
    raise ValueError(f"diffusion betas ({beta_start!r}, {beta_end!r}); allowed: "
                     "0 < beta_start < beta_end < 1")
  betas = jnp.linspace(beta_start, beta_end, steps, dtype=jnp.float32)
  return Schedule(betas, jnp.cumprod(1.0 - betas))


def timestep_embedding(t: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal embedding of integer timesteps, ``[B] -> [B, dim]``."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / half)
  angles = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ResBlock(nn.Module):
  """GroupNorm, SiLU, 3×3 conv, plus the (time, class) embedding; twice; residual."""

  channels: int
  groups: int = 8

  @nn.compact
  def __call__(self, x, emb):
    h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(self.groups)(x)))
    h = h + nn.Dense(self.channels)(nn.silu(emb))[:, None, None, :]
    h = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(self.groups)(h)))
    if x.shape[-1] != self.channels:
      x = nn.Conv(self.channels, (1, 1))(x)
    return x + h


class UNet(nn.Module):
  """A compact noise-prediction U-Net: one ResBlock per level, ``len(channels) − 1``
  halvings (28 → 14 → 7, 8 → 4), skip connections by concatenation.

  Attributes:
    num_classes: the classes; label ``num_classes`` is the null class (guidance).
    channels: the width of each level.
    emb_dim: the width of the time and class embeddings.
  """

  num_classes: int
  channels: Sequence[int] = (32, 64)
  emb_dim: int = 128

  @nn.compact
  def __call__(self, x, t, y):
    squeeze = x.ndim == 3
    if squeeze:  # [B, H, W] -> [B, H, W, 1]
      x = x[..., None]
    emb = nn.Dense(self.emb_dim)(timestep_embedding(t, self.emb_dim))
    emb = nn.Dense(self.emb_dim)(nn.silu(emb))
    emb = emb + nn.Embed(self.num_classes + 1, self.emb_dim)(y)  # + 1: the null class
    h = nn.Conv(self.channels[0], (3, 3))(x)
    skips = []
    for i, c in enumerate(self.channels):
      h = ResBlock(c)(h, emb)
      if i < len(self.channels) - 1:
        skips.append(h)
        h = nn.Conv(c, (3, 3), strides=(2, 2))(h)
    h = ResBlock(self.channels[-1])(h, emb)
    for c, skip in zip(reversed(self.channels[:-1]), reversed(skips)):
      h = jax.image.resize(h, (h.shape[0], *skip.shape[1:3], h.shape[-1]), "nearest")
      h = ResBlock(c)(jnp.concatenate([h, skip], axis=-1), emb)
    out = nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(
        nn.silu(nn.GroupNorm(8)(h)))
    return out[..., 0] if squeeze else out


def build_unet(num_classes: int, input_shape: Sequence[int], *,
               channels: Sequence[int] = (32, 64), emb_dim: int = 128) -> models.Model:
  """A :class:`~lur_jax.models.Model` whose ``apply`` is ``(params, x_t, t, y) -> ε̂``.

  Args:
    num_classes: the classes (a null class is added for guidance).
    input_shape: ``[H, W]`` or ``[H, W, C]``.
    channels: the :class:`UNet`'s widths, multiples of 8.
    emb_dim: the embedding width.

  Returns:
    The model; its ``eval_apply`` raises (a DDPM is judged by its samples).

  Raises:
    ValueError: on an image size the halvings do not divide, or bad widths.
  """
  input_shape = tuple(input_shape)
  channels = tuple(channels)
  if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 8 or c % 8
                         for c in channels):
    raise ValueError(f"model.channels={channels!r}; allowed: ints >= 8, multiples of 8")
  scale = 2 ** (len(channels) - 1)
  if len(input_shape) not in (2, 3) or input_shape[0] % scale or input_shape[1] % scale:
    raise ValueError(f"images of shape {input_shape} for a U-Net with {len(channels) - 1} "
                     f"halvings; allowed: [H, W(, C)] with H and W divisible by {scale}")
  module = UNet(num_classes, channels, emb_dim)
  dummy = (jnp.zeros((1, *input_shape)), jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32))

  def apply(params, x, t, y):
    if tuple(x.shape[1:]) != input_shape:
      raise ValueError(f"inputs of shape {tuple(x.shape)} for a U-Net built for images of "
                       f"shape {input_shape}")
    return module.apply({"params": params}, x, t, y)

  def no_eval(*_):
    raise ValueError("a diffusion model is evaluated by sampling, not by eval_apply")

  return models.Model(init=lambda rng: module.init(rng, *dummy)["params"], apply=apply,
                      init_state=lambda rng: {}, eval_apply=no_eval, batch_moments=no_eval)


class Noised(NamedTuple):
  x_t: jax.Array
  t: jax.Array
  noise: jax.Array
  drop: jax.Array  # True where the label is replaced by the null class


def add_noise(schedule: Schedule, batch: dict, *, p_uncond: float = 0.0) -> Noised:
  """Draws t, ε and label dropout from ``batch["key"]`` and noises ``batch["x"]``.

  The draws are those of the global batch, so results do not depend on how
  the batch is split over devices.

  Args:
    schedule: the forward process.
    batch: ``{"x": images [B, ...] in [0, 1], "key": a PRNG key, ...}``.
    p_uncond: the probability of dropping a label to the null class.

  Returns:
    ``Noised(x_t, t, noise, drop)``: x_t, ``[B]`` steps, ε, ``[B]`` label-dropped bools.
  """
  x0 = 2.0 * batch["x"] - 1.0
  n = x0.shape[0]
  k_t, k_noise, k_drop = jax.random.split(batch["key"], 3)
  t = jax.random.randint(k_t, (n,), 0, len(schedule.betas))
  noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
  drop = jax.random.bernoulli(k_drop, p_uncond, (n,))
  ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
  return Noised(jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise, t, noise, drop)


def _per_example_mse(a, b):
  return jnp.square(a - b).reshape(a.shape[0], -1).mean(axis=1)


def noise_objective(apply_fn: Callable, schedule: Schedule, num_classes: int, *,
                    p_uncond: float = 0.0) -> Callable:
  """The DDPM loss ‖ε − ε_θ(x_t, t, y)‖², the retain objective.

  Args:
    apply_fn: ``(params, x_t, t, y) -> ε̂``.
    schedule: the forward process.
    num_classes: the null class's label (labels dropped with ``p_uncond``).
    p_uncond: label dropout for classifier-free guidance training.

  Returns:
    A pure ``loss(params, batch) -> scalar``; the batch holds ``"key"``.
  """
  def loss(params, batch):
    n = add_noise(schedule, batch, p_uncond=p_uncond)
    y = jnp.where(n.drop, num_classes, batch["y"])
    return _per_example_mse(apply_fn(params, n.x_t, n.t, y), n.noise).mean()
  return loss


def forget_objective(name: str, apply_fn: Callable, schedule: Schedule,
                     num_classes: int) -> Callable:
  """The class-forgetting objective, to be minimised.

  Args:
    name: ``"ga"`` (minus the conditional DDPM loss on the forget batch) or
      ``"rl"`` (the forgotten class's conditional prediction pulled toward the
      prediction for a random other class on the same x_t, that target under
      ``stop_gradient``).
    apply_fn: ``(params, x_t, t, y) -> ε̂``.
    schedule: the noise schedule.
    num_classes: number of real classes.

  Returns:
    A pure ``(params, batch) -> scalar``.
  """
  if name == "ga":
    loss = noise_objective(apply_fn, schedule, num_classes)
    return lambda params, batch: -loss(params, batch)
  if name == "rl":
    def relabel(params, batch):
      n = add_noise(schedule, batch)
      other = losses.random_wrong_labels(jax.random.fold_in(batch["key"], streams.RELABEL),
                                         batch["y"], num_classes)
      target = lax.stop_gradient(apply_fn(params, n.x_t, n.t, other))
      return _per_example_mse(apply_fn(params, n.x_t, n.t, batch["y"]), target).mean()
    return relabel
  raise ValueError(f"forget objective {name!r}; allowed: "
                   f"{', '.join(DIFFUSION_FORGET_OBJECTIVES)}")


def per_example_loss(apply_fn: Callable, schedule: Schedule) -> Callable:
  """The conditional DDPM loss per example, ``[B]`` (what SalUn's saliency scores)."""
  def loss(params, batch):
    n = add_noise(schedule, batch)
    return _per_example_mse(apply_fn(params, n.x_t, n.t, batch["y"]), n.noise)
  return loss


def _guided(apply_fn, params, x, t, labels, guidance, null_class):
  """ε̂ = (1 + w) ε_θ(x, t, y) − w ε_θ(x, t, ∅), both in one batch."""
  n = x.shape[0]
  t = jnp.full((2 * n,), t, jnp.int32)
  eps = apply_fn(params, jnp.concatenate([x, x]), t,
                 jnp.concatenate([labels, jnp.full_like(labels, null_class)]))
  return (1.0 + guidance) * eps[:n] - guidance * eps[n:]


def ddim_sample(apply_fn: Callable, params, schedule: Schedule, key: jax.Array,
                labels: jax.Array, shape: Sequence[int], *, null_class: int,
                steps: int = 50, guidance: float = 2.0, eta: float = 0.0) -> jax.Array:
  """DDIM (Song et al.) from x_T ~ N(0, I) in ``steps`` steps; images in [0, 1].

  ``eta = 0`` is deterministic given ``key``; ``eta = 1`` matches DDPM's noise
  level. Jittable (``steps`` and ``shape`` static).

  Args:
    apply_fn, params: the noise model ``(params, x_t, t, y) -> ε̂``.
    schedule, key: the forward process; the key of every draw.
    labels: ``[N]`` classes to generate.
    shape: one image's shape.
    null_class, guidance: ε̂ = (1 + g)·ε̂(y) − g·ε̂(null).
    steps, eta: DDIM's step count and noise level.

  Returns:
    ``[N, *shape]`` images in [0, 1].
  """
  total = len(schedule.betas)
  ts = jnp.linspace(total - 1, 0, steps).round().astype(jnp.int32)
  prev = jnp.concatenate([ts[1:], jnp.array([-1], jnp.int32)])
  key_init, key_steps = jax.random.split(key)
  x = jax.random.normal(key_init, (labels.shape[0], *shape))

  def step(x, inputs):
    t, t_prev, k = inputs
    ab = schedule.alpha_bars[t]
    ab_prev = jnp.where(t_prev >= 0, schedule.alpha_bars[jnp.maximum(t_prev, 0)], 1.0)
    eps = _guided(apply_fn, params, x, t, labels, guidance, null_class)
    x0 = jnp.clip((x - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), -1.0, 1.0)
    # The noise that goes with the clipped x_0: keeping the raw ε̂ instead puts the
    # clipping error into every later step (with guidance, 60% vs 100% judged
    # correct on digits).
    eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)
    sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    x = (jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps
         + sigma * jax.random.normal(k, x.shape))
    return x, None

  x, _ = lax.scan(step, x, (ts, prev, jax.random.split(key_steps, steps)))
  return (jnp.clip(x, -1.0, 1.0) + 1.0) / 2.0


def ddpm_sample(apply_fn: Callable, params, schedule: Schedule, key: jax.Array,
                labels: jax.Array, shape: Sequence[int], *, null_class: int,
                guidance: float = 2.0) -> jax.Array:
  """Ancestral DDPM sampling through all T steps. Jittable.

  Args:
    apply_fn, params, schedule, key, labels, shape, null_class, guidance: see ddim_sample.

  Returns:
    ``[N, *shape]`` images in [0, 1].
  """
  total = len(schedule.betas)
  key_init, key_steps = jax.random.split(key)
  x = jax.random.normal(key_init, (labels.shape[0], *shape))

  def step(x, inputs):
    t, k = inputs
    beta, ab = schedule.betas[t], schedule.alpha_bars[t]
    eps = _guided(apply_fn, params, x, t, labels, guidance, null_class)
    mean = (x - beta / jnp.sqrt(1 - ab) * eps) / jnp.sqrt(1 - beta)
    return mean + jnp.where(t > 0, jnp.sqrt(beta), 0.0) * jax.random.normal(k, x.shape), None

  x, _ = lax.scan(step, x, (jnp.arange(total - 1, -1, -1), jax.random.split(key_steps, total)))
  return (jnp.clip(x, -1.0, 1.0) + 1.0) / 2.0
