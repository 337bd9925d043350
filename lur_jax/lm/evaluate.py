"""What the TOFU metrics read off a model: each example's answer NLL (teacher-forced) and
greedy generations, both jitted.

``apply_fn(params, tokens [B, T]) -> logits [B, T, V]`` is any causal language model (the
transformer of :mod:`lur_jax.models.transformer`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lur_jax.lm import losses


def answer_nll(apply_fn: Callable, params, tokens, labels, chunk: int = 256) -> np.ndarray:
  """Each example's mean NLL over its answer tokens (and EOS), in chunks.

  Args:
    apply_fn: the model.
    params: its parameters.
    tokens, labels: ``[N, T]`` from :func:`lur_jax.lm.tokenizer.encode`.
    chunk: examples per call.

  Returns:
    ``[N]`` float64: the ``avg_loss`` open-unlearning's probability and truth ratio read.
  """
  tokens, labels = np.asarray(tokens), np.asarray(labels)
  return np.concatenate([np.asarray(_mean_nll(apply_fn, params, tokens[i:i + chunk],
                                              labels[i:i + chunk]), np.float64)
                         for i in range(0, len(tokens), chunk)])


# Module-level and keyed by the model: one compilation per model and shape, not per call.
@functools.partial(jax.jit, static_argnums=0)
def _mean_nll(apply_fn, params, tokens, labels):
  total, count = losses.sequence_nll(apply_fn(params, tokens), tokens, labels)
  return total / jnp.maximum(count, 1)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _greedy(apply_fn, params, buffer, lengths, max_new, eos, pad):
  rows = jnp.arange(buffer.shape[0])

  def step(i, carry):
    buffer, done = carry
    position = lengths + i
    logits = apply_fn(params, buffer)[rows, position - 1]
    token = jnp.where(done, pad, jnp.argmax(logits, -1).astype(buffer.dtype))
    return buffer.at[rows, position].set(token), done | (token == eos)
  buffer, _ = lax.fori_loop(0, max_new, step, (buffer, jnp.zeros(len(rows), bool)))
  return jax.vmap(lambda b, n: lax.dynamic_slice(b, (n,), (max_new,)))(buffer, lengths)


def greedy(apply_fn: Callable, params, prompts, prompt_lengths, max_new: int, eos: int,
           pad: int = 0) -> np.ndarray:
  """Greedy decoding under ``jit``: each prompt continued by its argmax token, up to
  ``max_new`` tokens or EOS (no cache: each step reruns the model on the whole buffer).

  Args:
    apply_fn: the model (causal: position t sees tokens ≤ t).
    params: its parameters.
    prompts: ``[B, T]`` int tokens, each prompt left-aligned, ``T`` ≥ its length + ``max_new``.
    prompt_lengths: ``[B]`` each prompt's length.
    max_new: the most tokens generated.
    eos: the end token; generation stops after it.
    pad: written after EOS.

  Returns:
    ``[B, max_new]`` the generated tokens (EOS included, ``pad`` after it).

  Raises:
    ValueError: when a prompt and ``max_new`` do not fit ``T``.
  """
  prompts, lengths = jnp.asarray(prompts), jnp.asarray(prompt_lengths)
  if int(lengths.max()) + max_new > prompts.shape[1]:
    raise ValueError(f"prompts of up to {int(lengths.max())} tokens and max_new={max_new} in a "
                     f"buffer of {prompts.shape[1]}; allowed: prompt + max_new <= the buffer")
  return np.asarray(_greedy(apply_fn, params, prompts, lengths, int(max_new), int(eos),
                            int(pad)))
