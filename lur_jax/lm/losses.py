"""Answer-only next-token losses and the forget objectives of NPO and SimNPO.

A batch holds ``tokens [B, T]`` (question then answer, EOS appended) and ``labels [B, T]``, a
boolean mask of the positions whose token carries loss (the answer and its EOS; the prompt and
the padding do not). Position t's logits predict token t + 1, as in open-unlearning's
``compute_batch_nll`` (labels shifted by one, ``-100`` for masked positions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lur_jax.core import losses as core_losses


def token_nll(logits: jax.Array, tokens: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-token negative log-likelihood of the labelled next tokens.

  Args:
    logits: ``[B, T, V]``, position t predicting token t + 1.
    tokens: ``[B, T]`` int token ids.
    labels: ``[B, T]`` bool, which tokens carry loss.

  Returns:
    ``[B, T − 1]``: −log p(token t + 1) where ``labels[:, t + 1]``, else 0.
  """
  return jnp.where(labels[:, 1:], core_losses.next_token_nll(logits, tokens), 0.0)


def sequence_nll(logits, tokens, labels) -> tuple[jax.Array, jax.Array]:
  """``(sum [B], count [B])``: each example's summed answer NLL and its number of answer tokens.

  Args:
    logits, tokens, labels: as in :func:`token_nll`.

  Returns:
    The per-example sums and token counts.
  """
  return token_nll(logits, tokens, labels).sum(-1), labels[:, 1:].sum(-1)


def answer_loss(logits, tokens, labels) -> jax.Array:
  """The mean NLL over every answer token of the batch (GA's and GradDiff's NLL).

  Args:
    logits, tokens, labels: as in :func:`token_nll`.

  Returns:
    A scalar.
  """
  total, count = sequence_nll(logits, tokens, labels)
  return total.sum() / jnp.maximum(count.sum(), 1)


def _check_beta(beta, name: str) -> None:
  if not isinstance(beta, jax.core.Tracer) and not beta > 0:
    raise ValueError(f"{name} beta={beta!r}; allowed: a number > 0")


def npo_loss(nll_sum: jax.Array, ref_nll_sum: jax.Array, beta: float) -> jax.Array:
  """NPO's forget loss, −(2/β)·mean log σ(−β s), s = Σ log p_θ − Σ log p_ref.

  Args:
    nll_sum: ``[B]`` summed answer NLL under the model being unlearned.
    ref_nll_sum: ``[B]`` the same under the frozen reference (the model before unlearning).
    beta: β > 0 (0.1 for TOFU).

  Returns:
    A scalar, to be minimised.

  Raises:
    ValueError: for β ≤ 0.
  """
  _check_beta(beta, "npo")
  s = ref_nll_sum - nll_sum  # log p_θ − log p_ref, summed over the answer
  return -2.0 / beta * jax.nn.log_sigmoid(-beta * s).mean()


def simnpo_loss(nll_sum: jax.Array, count: jax.Array, beta: float,
                delta: float = 0.0) -> jax.Array:
  """SimNPO's forget loss, −(2/β)·mean log σ(β a), a = Σ NLL / answer length − δ.

  Args:
    nll_sum: ``[B]`` summed answer NLL.
    count: ``[B]`` answer tokens per example.
    beta: β > 0 (4.5 for TOFU).
    delta: δ (0 for TOFU).

  Returns:
    A scalar, to be minimised; no reference model.

  Raises:
    ValueError: for β ≤ 0.
  """
  _check_beta(beta, "simnpo")
  a = nll_sum / count - delta
  return -2.0 / beta * jax.nn.log_sigmoid(beta * a).mean()
