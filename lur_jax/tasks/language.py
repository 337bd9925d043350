"""Language modelling: the transformer on token sequences, next-token losses, and each
model's negative log-likelihood on the forget, retain and test sets against retraining.

The methods are the classification methods on next-token prediction: ``ga`` ascends the
forget sequences' next-token loss, ``rl`` trains them towards random wrong tokens, SalUn and
Scissorhands score parameters by the per-sequence loss. Any token data will do: the generated
``markov`` set, or your own :class:`~lur_jax.Splits` of int32 tokens ``[N, T]`` (a
sequence's label is what class-wise forgetting removes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lur_jax import models
from lur_jax.core import checks, losses, methods
from lur_jax.models import attention, transformer
from lur_jax.study import config as config_lib, plugins, results
from lur_jax.tasks import base

FIELDS = ("vocab", "width", "depth", "heads", "seq_len", "mlp_ratio", "dtype", "remat",
          "scan_unroll", "attention", "attention_chunk")
COLUMNS = (("Forget NLL", "forget_nll"), ("Retain NLL", "retain_nll"), ("Test NLL", "test_nll"))


def model_config(config) -> transformer.TransformerConfig:
  """The transformer of ``config.model`` (its fields, defaults for the rest)."""
  return transformer.TransformerConfig(**{k: v for k, v in config.model.items() if k in FIELDS})


def check(config, method_names, devices) -> None:
  """The checks only a language study needs (see ``configs/lm_smoke.py``)."""
  del devices
  if not plugins.is_import_path(config.model.name):  # an own model: checked as it is built
    checks.one_of("model.name", config.model.name, ("transformer", "package.module:factory"))
    unknown = sorted(set(config.model) - {"name", *FIELDS})
    if unknown:
      raise ValueError(f"model.{unknown[0]}: unknown for the transformer; allowed: "
                       f"{', '.join(FIELDS)}")
    model_config(config).check()
  check_attention(config, method_names)


def check_attention(config, method_names) -> None:
  """``model.attention`` against this machine and the methods: ``cudnn`` needs a GPU and no
  second-order LUR mode (a fused kernel cannot be differentiated twice)."""
  kernel = config.model.get("attention", "plain")
  checks.one_of("model.attention", kernel, attention.IMPLEMENTATIONS)
  if kernel == "cudnn" and jax.default_backend() != "gpu":
    raise ValueError(f"model.attention='cudnn' on {jax.default_backend()}; allowed: a GPU, or "
                     "model.attention=plain, chunked or xla")
  for name in method_names:
    mode = config_lib.method_settings(config, name).get("mode")
    if mode is not None:
      attention.check_twice_differentiable(kernel, mode, name)


def _shifted(apply_fn):
  """Logits of positions 0 .. T − 2, each predicting the next token."""
  return lambda params, x: apply_fn(params, x)[:, :-1]


def _on_next_tokens(loss):
  """A classification loss on ``{"x", "y"}`` -> the same on the next tokens."""
  return lambda params, batch: loss(params, {**batch, "y": batch["x"][:, 1:]})


def objectives(vocab: int) -> methods.Objectives:
  """The methods' losses on next-token prediction (``rl`` draws from the vocabulary)."""
  return methods.Objectives(
      retain=lambda apply_fn, num_classes: transformer.lm_objective(apply_fn),
      forget=lambda name, apply_fn, num_classes: _on_next_tokens(
          losses.forget_objective(name, _shifted(apply_fn), vocab)),
      per_example=lambda apply_fn: lambda params, batch: losses.next_token_nll(
          apply_fn(params, batch["x"]), batch["x"]).mean(-1))


def build_model(config: transformer.TransformerConfig) -> models.Model:
  """The transformer as a :class:`~lur_jax.Model` (no model state; logical names kept)."""
  module = transformer.Transformer(config)
  partitioned = lambda rng: module.init(rng, jnp.zeros((1, config.seq_len), jnp.int32))["params"]
  return models.stateless(lambda params, x: module.apply({"params": params}, x), partitioned)


def model_of(config) -> models.Model:
  """``config.model``'s language model: the transformer, or a user's own by import path
  (``factory(vocab, seq_len, **the other model keys)``, :func:`lur_jax.study.plugins.user_lm`)."""
  m = config.model
  if plugins.is_import_path(m.name):
    rest = {k: v for k, v in m.items() if k not in ("name", "vocab", "seq_len")}
    return plugins.user_lm(m.name, m.vocab, m.seq_len, **rest)
  return build_model(model_config(config))


def build(config, splits) -> base.Built:
  """The language model on ``splits``' token sequences."""
  c = model_config(config)
  x = splits.train.x
  if not np.issubdtype(x.dtype, np.integer) or x.ndim != 2:
    raise ValueError(f"data: {x.dtype} inputs of shape {x.shape[1:]}; allowed for a language "
                     "model: int token sequences [N, T]")
  if x.shape[1] > c.seq_len or int(x.max()) >= c.vocab or int(x.min()) < 0:
    raise ValueError(f"data: sequences of {x.shape[1]} tokens in 0..{int(x.max())}; allowed: "
                     f"at most model.seq_len={c.seq_len} tokens below model.vocab={c.vocab}")
  return base.Built(model_of(config), objectives(c.vocab))


def measurer(exp, cache, log, progress):
  """Each model's mean next-token NLL on D_f, D_r and the test set."""
  del cache, log, progress
  nll = jax.jit(lambda params, x: losses.next_token_nll(exp.model.apply(params, x), x).mean(-1))
  train, fs = exp.splits.train, exp.forget

  def mean_nll(params, x, chunk=256):
    return float(np.mean(np.concatenate([np.asarray(nll(params, x[i:i + chunk]))
                                         for i in range(0, len(x), chunk)])))

  def measure(variables, name):
    del name
    params = variables["params"]
    row = {"forget_nll": mean_nll(params, train.x[fs.forget]),
           "retain_nll": mean_nll(params, train.x[fs.retain]),
           "test_nll": mean_nll(params, fs.test.x)}
    if not all(np.isfinite(v) for v in row.values()):
      raise FloatingPointError("non-finite NLL")
    return row
  return measure, {}


def compare(row: dict, reference: dict | None) -> dict:
  """``nll_gap``: the mean absolute difference of the three NLLs to the retrain's."""
  keys = [key for _, key in COLUMNS]
  ok = reference is not None and all(k in row and k in reference for k in keys)
  return {"nll_gap": float(np.mean([abs(row[k] - reference[k]) for k in keys])) if ok else None}


TASK = base.Task(check=check, build=build, measurer=measurer, compare=compare,
                 columns=(*(results.Column(title, key) for title, key in COLUMNS),
                          results.Column("NLL Gap", "nll_gap")))
