"""CIFAR augmentation as pure JAX functions of a key, applied on device."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_flip(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
  """Random crop back to size from a zero-padded image, and a random horizontal flip.

  Args:
    key: PRNG key; each image draws its own offsets and flip.
    images: ``[B, H, W, C]``.
    padding: pixels of zero padding on every side before cropping.

  Returns:
    Augmented images, same shape and dtype.
  """
  b, h, w, _ = images.shape
  k_y, k_x, k_flip = jax.random.split(key, 3)
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  dy = jax.random.randint(k_y, (b,), 0, 2 * padding + 1)
  dx = jax.random.randint(k_x, (b,), 0, 2 * padding + 1)
  crop = jax.vmap(lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (h, w, img.shape[-1])))
  cropped = crop(padded, dy, dx)
  flip = jax.random.bernoulli(k_flip, 0.5, (b,))
  return jnp.where(flip[:, None, None, None], cropped[:, :, ::-1], cropped)
