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

from lur_jax.core import losses as core_losses
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
  return np.concatenate([np.asarray(_jitted(_mean_nll, apply_fn)(params, tokens[i:i + chunk],
                                              labels[i:i + chunk]), np.float64)
                         for i in range(0, len(tokens), chunk)])


@functools.lru_cache(maxsize=8)
def _jitted(fn, apply_fn, static_argnums=()):
  """``fn`` with the model bound, jitted: one compilation per model and shape, not per call;
  the last 8 models stay compiled (older ones are evicted, with what they hold)."""
  return jax.jit(functools.partial(fn, apply_fn), static_argnums=static_argnums)


def _mean_nll(apply_fn, params, tokens, labels):
  total, count = losses.sequence_nll(apply_fn(params, tokens), tokens, labels)
  return total / jnp.maximum(count, 1)


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
  return np.asarray(_jitted(_greedy, apply_fn, (3, 4, 5))(params, prompts, lengths,
                                                          int(max_new), int(eos), int(pad)))


def _token_stats(apply_fn, params, tokens):
  """Each next token's log p, and μ and σ² of log p under the distribution, in the logits'
  precision (float32 at least); σ² as Σ p (log p − μ)², which stays exact where the
  distribution is flat (E[log² p] − μ² cancels to noise there)."""
  logits = apply_fn(params, tokens)[:, :-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
  target = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
  p = jnp.exp(logp)
  mu = (p * logp).sum(-1)
  return target, mu, (p * jnp.square(logp - mu[..., None])).sum(-1)


def scored_positions(labels) -> list[np.ndarray]:
  """Per example, the positions t whose next token the membership attacks score: the answer's
  tokens without EOS (open-unlearning's ``tokenwise_logprobs`` drops the last labelled one).

  Args:
    labels: ``[N, T]`` bool loss masks.

  Returns:
    ``N`` index arrays into ``[T − 1]``.
  """
  return [np.flatnonzero(row[1:])[:-1] for row in np.asarray(labels)]


def token_stats(apply_fn: Callable, params, tokens, labels,
                chunk: int = 256) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Per example, over the answer tokens without EOS: each token's log-probability, and the
  mean μ and variance σ² of log p under the model's next-token distribution (Min-K%++).

  Args:
    apply_fn, params: the model.
    tokens, labels: ``[N, T]``.
    chunk: examples per call.

  Returns:
    ``N`` tuples ``(logprobs, mu, var)`` of ``[n_i]`` float64 arrays.
  """
  tokens = np.asarray(tokens)
  stats = [np.concatenate(parts).astype(np.float64) for parts in zip(*(
      [np.asarray(a) for a in _jitted(_token_stats, apply_fn)(params, tokens[i:i + chunk])]
      for i in range(0, len(tokens), chunk)))]
  return [tuple(s[i, where] for s in stats) for i, where in enumerate(scored_positions(labels))]


def _grad_norms(apply_fn, params, tokens, weights):
  def loss(p, x, w):
    nll = core_losses.next_token_nll(apply_fn(p, x[None]).astype(jnp.float32), x[None])[0]
    return (nll * w).sum() / jnp.maximum(w.sum(), 1)

  def norms(x, w):
    leaves = jax.tree.leaves(jax.grad(loss)(params, x, w))
    return jnp.mean(jnp.stack([jnp.linalg.norm(g.ravel()) for g in leaves]))
  return jax.vmap(norms)(tokens, weights)


def grad_norms(apply_fn: Callable, params, tokens, labels, chunk: int = 32) -> np.ndarray:
  """GradNorm's score: per example, the mean over parameter tensors of the L2 norm of the
  gradient of its mean answer NLL (EOS excluded), one example at a time (vmapped).

  Args:
    apply_fn, params: the model.
    tokens, labels: ``[N, T]``.
    chunk: examples per call (each holds a gradient the size of the model).

  Returns:
    ``[N]`` float64.
  """
  tokens = np.asarray(tokens)
  weights = np.zeros((len(tokens), tokens.shape[1] - 1), np.float32)
  for i, where in enumerate(scored_positions(labels)):
    weights[i, where] = 1
  return np.concatenate([np.asarray(_jitted(_grad_norms, apply_fn)(params, tokens[i:i + chunk],
                                                weights[i:i + chunk]), np.float64)
                         for i in range(0, len(tokens), chunk)])


def _argmax(apply_fn, params, tokens):
  return jnp.argmax(apply_fn(params, tokens)[:, :-1], -1)


def teacher_forced(apply_fn: Callable, params, tokens, labels,
                   chunk: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
  """Per example, the teacher-forced argmax predictions and the true tokens over the answer
  without EOS (what extraction strength compares).

  Args:
    apply_fn, params: the model.
    tokens, labels: ``[N, T]``.
    chunk: examples per call.

  Returns:
    ``N`` pairs ``(predictions [n_i], answer tokens [n_i])``.
  """
  tokens = np.asarray(tokens)
  predicted = np.concatenate([np.asarray(_jitted(_argmax, apply_fn)(params, tokens[i:i + chunk]))
                              for i in range(0, len(tokens), chunk)])
  return [(predicted[i, where], tokens[i, 1:][where])
          for i, where in enumerate(scored_positions(labels))]
