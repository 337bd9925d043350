"""TOFU-style unlearning of fictitious authors (``task="tofu"``, ``configs/tofu.py``).

The transformer learns the invented world's general knowledge first (the pretrained start),
then every author's question-answer pairs (the original, TOFU's "full" model) or the retain
authors' only (``retrain``, the gold standard). Methods unlearn a forget split (forget01, 05,
10: 1, 5 or 10% of the authors) on the answer-only loss; each model is scored by
open-unlearning's metrics (:mod:`lur_jax.lm.metrics`): forget quality and privleak against
the retain model, model utility, ROUGE-L recall, truth ratios, extraction strength and the
membership attacks on forget vs holdout authors.

``forget.split`` may name several splits (``"forget01,forget05,forget10"``): the study runs
each under ``out/<split>/``, sharing the pretrained and the full model.

With ``model.name="pretrained"`` the study unlearns a Hugging Face checkpoint on TOFU's own
files instead (:mod:`lur_jax.tasks.tofu_pretrained`). Either way each model's evaluation is
written in open-unlearning's log format too (``out/<split>/eval/<model>/TOFU_EVAL.json``).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from lur_jax.core import checks, methods, streams, train
from lur_jax.lm import corpus as corpus_lib, eval_logs, losses, metrics, scorecard, tofu, tofu_files
from lur_jax.study import results, runner
from lur_jax.tasks import base, language, tofu_pretrained
from lur_jax.training import cache as cache_lib, checkpoint, parallel

OBJECTIVES = ("ga", "npo", "simnpo")
DATA_KEYS = ("authors", "questions", "perturbed", "data_seed", "paraphrases")
KEYS = (*DATA_KEYS, "pretrain_epochs", "npo_beta", "simnpo_beta", "simnpo_delta",
        "eval_retain", "max_new_tokens", "eval_batch_size", "data_dir", "retain_checkpoint", "retain_logs",
        "export")
COLUMNS = (results.Column("Forget quality", "forget_quality", 2, scientific=True),
           results.Column("Model utility", "model_utility"),
           results.Column("privleak", "privleak", 1),
           results.Column("Forget ROUGE-L", "forget_rouge"),
           results.Column("Retain ROUGE-L", "retain_rouge"),
           results.Column("Forget truth ratio", "forget_truth_ratio"),
           results.Column("MIA Min-K% AUC", "mia_min_k"),
           results.Column("Extraction", "extraction_strength"))


def check(config, method_names, devices) -> None:
  """The TOFU study's own keys (see ``configs/tofu.py`` and ``configs/tofu_hf.py``)."""
  t = config.tofu
  if tofu_pretrained.active(config):
    tofu_pretrained.check(config, method_names)
    for split in splits(config):
      tofu_files.check(t.data_dir, split)
  else:
    language.check(config, method_names, devices)
  checks.one_of("forget.kind", config.forget.kind, ("authors",))
  for split in splits(config):
    checks.one_of("forget.split", split, (*tofu.SPLITS, tofu.VALIDATION))
  checks.positive(t.get("max_new_tokens", 200), "tofu.max_new_tokens", int)
  checks.positive(t.get("eval_batch_size", 256), "tofu.eval_batch_size", int)
  for key in ("authors", "questions", "perturbed", "pretrain_epochs", "eval_retain"):
    checks.positive(t[key], f"tofu.{key}", int)
  if t.questions > tofu.MAX_QUESTIONS:
    raise ValueError(f"tofu.questions={t.questions}; allowed: 1 .. {tofu.MAX_QUESTIONS}")
  for key in ("npo_beta", "simnpo_beta"):
    checks.positive(t[key], f"tofu.{key}")
  unknown = sorted(set(t) - set(KEYS))
  if unknown:
    raise ValueError(f"tofu.{unknown[0]}: unknown key; allowed: {', '.join(KEYS)}")


def splits(config) -> list[str]:
  """The forget splits ``forget.split`` names, in order."""
  return [s.strip() for s in str(config.forget.split).split(",") if s.strip()]


def variants(config) -> list[tuple[str, ml_collections.ConfigDict]]:
  """One config per forget split of ``forget.split``.

  Args:
    config: a TOFU config.

  Returns:
    ``[(split, config)]``, the study's variants.
  """
  out = []
  for split in splits(config):
    c = ml_collections.ConfigDict(config.to_dict())
    c.forget.split = split
    out.append((split, c))
  return out


# ---- the objectives: answer-only NLL, and the forget losses of GA, NPO and SimNPO

def answer_objective(apply_fn):
  """The retain loss: the mean NLL over every answer token of the batch.

  Args:
    apply_fn: ``(params, tokens) -> logits``.

  Returns:
    ``loss(params, {"x": tokens, "y": answer mask}) -> scalar``.
  """
  return lambda params, batch: losses.answer_loss(apply_fn(params, batch["x"]), batch["x"],
                                                 batch["y"])


def forget_objective(name, apply_fn, reference, *, npo_beta, simnpo_beta, simnpo_delta):
  """A forget loss, to be minimised.

  Args:
    name: ``"ga"`` (−NLL), ``"npo"`` or ``"simnpo"``.
    apply_fn: ``(params, tokens) -> logits``.
    reference: NPO's frozen parameters (the model before unlearning).
    npo_beta, simnpo_beta, simnpo_delta: the losses' β and δ.

  Returns:
    ``loss(params, batch) -> scalar``.

  Raises:
    ValueError: for ``npo`` without a reference.
  """
  if name == "ga":
    nll = answer_objective(apply_fn)
    return lambda params, batch: -nll(params, batch)
  if name == "npo" and reference is None:
    raise ValueError("forget objective 'npo' without reference=; allowed: the frozen "
                     "parameters of the model before unlearning")
  def loss(params, batch):
    x, y = batch["x"], batch["y"]
    total, count = losses.sequence_nll(apply_fn(params, x), x, y)
    if name == "npo":
      ref_total, _ = losses.sequence_nll(apply_fn(lax.stop_gradient(reference), x), x,
                                         y)
      return losses.npo_loss(total, ref_total, npo_beta)
    return losses.simnpo_loss(total, jnp.maximum(count, 1), simnpo_beta, simnpo_delta)
  return loss


def kl_objective(apply_fn, reference):
  """KL(reference ‖ model) per position, averaged over every position of the batch
  (padding included, as open-unlearning's ``compute_kl_divergence``).

  Args:
    apply_fn: ``(params, tokens) -> logits``.
    reference: the frozen parameters.

  Returns:
    ``loss(params, batch) -> scalar``.
  """
  def loss(params, batch):
    logp = jax.nn.log_softmax(apply_fn(params, batch["x"]))
    ref = jax.nn.log_softmax(apply_fn(lax.stop_gradient(reference), batch["x"]))
    return (jnp.exp(ref) * (ref - logp)).sum(-1).mean()
  return loss


def objectives(config) -> methods.Objectives:
  """The methods' losses on answers; NPO's reference is the run's frozen start.

  Args:
    config: a TOFU config (β and δ from its ``tofu`` section).

  Returns:
    The :class:`~lur_jax.Objectives` (``forget_names`` ga, npo, simnpo; ``retain_kl``).
  """
  t = config.tofu
  betas = {"npo_beta": t.npo_beta, "simnpo_beta": t.simnpo_beta,
           "simnpo_delta": t.simnpo_delta}

  def forget(name, apply_fn, num_classes, reference=None):
    del num_classes
    if name not in OBJECTIVES:
      raise ValueError(f"forget objective {name!r}; allowed: {', '.join(OBJECTIVES)}")
    return forget_objective(name, apply_fn, reference, **betas)

  per_example = lambda apply_fn: lambda params, batch: jnp.divide(*losses.sequence_nll(
      apply_fn(params, batch["x"]), batch["x"], batch["y"]))
  return methods.Objectives(
      retain=lambda apply_fn, num_classes: answer_objective(apply_fn),
      forget=forget, per_example=per_example, forget_names=OBJECTIVES, needs_reference=True,
      retain_kl=kl_objective)


def build(config, splits_) -> base.Built:
  """The transformer (``model.*``), or the checkpoint's decoder, and the answer-only
  objectives."""
  if tofu_pretrained.active(config):
    model = tofu_pretrained.build(config)
    vocab = model.apply.pretrained[0].vocab
    if splits_.num_classes > vocab:
      raise ValueError(f"model.tokenizer has {splits_.num_classes} tokens, model.checkpoint's "
                       f"vocabulary {vocab}; allowed: a tokenizer within the model's vocabulary")
    return base.Built(model, objectives(config))
  return base.Built(language.model_of(config), objectives(config))


def load(config):
  """The generated authors as the study's data (:func:`lur_jax.lm.corpus.splits_of`), or
  TOFU's files (:func:`lur_jax.lm.tofu_files.read`)."""
  if tofu_pretrained.active(config):
    files = tofu_files.read(config)
    return files.splits, files.forget
  return corpus_lib.splits_of(corpus_lib.corpus(config))


def cache_key(config) -> dict:
  """What determines the data and the pretrained start (or the checkpoint and files)."""
  if tofu_pretrained.active(config):
    return tofu_pretrained.cache_key(config)
  t = config.tofu
  return {"tofu": {k: t[k] for k in (*DATA_KEYS, "pretrain_epochs")}}


def initial(exp, cache, log, progress) -> dict:
  """The pretrained start: the transformer trained on the general-knowledge set with the
  ``train`` recipe for ``tofu.pretrain_epochs`` (cached, shared by every variant)."""
  cfg = exp.config
  key = {"seed": cfg.seed, "model": cfg.model.to_dict(), "train": cfg.train.to_dict(),
         **cache_key(cfg)}

  def make(checkpoints) -> cache_lib.Trained:
    del checkpoints  # short: no checkpoints
    world = exp.splits.val
    settings = exp.settings["retrain"].replace(
        epochs=cfg.tofu.pretrain_epochs, batch_size=min(cfg.train.batch_size, len(world.x)))
    every, none = np.arange(len(world.x)), np.zeros(0, np.int64)
    result = runner.run_method(exp, runner.recipe("retrain", settings, every, none), start(),
                               world, every, none, seed=streams.derive_seed(cfg.seed, "pretrain"),
                               desc="pretrain", progress=progress, log=log)
    log(f"pretrain: {result.steps} steps on the general-knowledge set, {result.seconds:.1f} s")
    return cache_lib.Trained(train.variables_of(result.state),
                             {"seconds": result.seconds, "steps": result.steps})

  start = lambda: runner.initial_variables(exp.model, exp.mesh, cfg.seed)
  return cache.memoised("pretrain", key, make, jax.eval_shape(start), shared=True)[0].variables


def measurer(exp, cache, log, progress):
  """Each model's TOFU metrics (:func:`lur_jax.lm.scorecard.scorer`); forget quality and
  privleak come in :func:`compare`. The generated run's data are saved under ``out/data/``;
  a pretrained run exports each unlearned model (``out/<split>/hf/<method>/``)."""
  cfg = exp.config
  max_new, batch = cfg.tofu.get("max_new_tokens", 200), cfg.tofu.get("eval_batch_size", 256)
  size = {"retain": len(exp.forget.retain), "trained_sequences": len(exp.splits.train.x),
          "vocab": exp.splits.num_classes}
  if not tofu_pretrained.active(cfg):
    c = corpus_lib.corpus(cfg)
    corpus_lib.save_data(c, cache.out_dir)
    pretrained = initial(exp, cache, log, progress)["params"]
    sets = scorecard.corpus_sets(c, cfg.tofu.data_seed, cfg.tofu.eval_retain)
    return (scorecard.scorer(exp.model.apply, sets, pretrained, max_new=max_new, batch=batch),
            scorecard.header(sets, **{**size, "retain": len(c.retain_index)}))
  sets = tofu_files.read(cfg).sets
  score = scorecard.scorer(exp.model.apply, sets, None, tofu_pretrained.generator(exp.model),
                           max_new, batch)

  def measure(variables, name):
    row = score(variables, name)
    if cfg.tofu.get("export", True) and name not in ("original", "retrain") and (
        parallel.is_writer()):
      folder = os.path.join(cache.out_dir, cache.scope, "hf", name)
      tofu_pretrained.export(exp, variables, folder)
      log(f"{name}: exported to {folder}")
    return row
  t = cfg.tofu
  return measure, scorecard.header(sets, **size, checkpoint=cfg.model.checkpoint,
                                   data_dir=t.data_dir, reference=t.get("retain_checkpoint")
                                   or t.get("retain_logs") or None)


def compare(row: dict, reference: dict | None) -> dict:
  """Forget quality (KS p-value of the forget truth ratios against the retain model's) and
  privleak (Min-K% AUC against the retain model's; 0.5 without one)."""
  if "forget_truth_ratios" not in row:
    return {"forget_quality": None, "privleak": None}
  ok = reference is not None and "forget_truth_ratios" in reference
  return {"forget_quality": metrics.forget_quality(row["forget_truth_ratios"],
                                                   reference["forget_truth_ratios"])
          if ok else None,
          "privleak": metrics.privleak(row["mia_min_k"], reference["mia_min_k"] if ok else 0.5)}


def given(exp, name: str) -> dict | None:
  """A pretrained run's original and retain model (:func:`lur_jax.tasks.tofu_pretrained.given`);
  ``None`` (train them) for the generated study."""
  return tofu_pretrained.given(exp, name) if tofu_pretrained.active(exp.config) else None


def reference(exp) -> dict | None:
  """The retain model's evaluation logs (``tofu.retain_logs``) as the retrain row, if set."""
  path = exp.config.tofu.get("retain_logs")
  return eval_logs.reference(path) if path else None


def write(exp, results_: dict, out_dir: str) -> None:
  """Every model's evaluation as open-unlearning writes it: ``eval/<model>/TOFU_EVAL.json``
  and ``TOFU_SUMMARY.json``."""
  del exp
  rows = {"original": results_["original"], **results_["methods"]}
  for name, row in rows.items():
    if "diverged_at_step" in row:
      continue
    logs = eval_logs.to_logs(row)
    folder = os.path.join(out_dir, "eval", name)
    checkpoint.write_json(os.path.join(folder, "TOFU_EVAL.json"), logs)
    checkpoint.write_json(os.path.join(folder, "TOFU_SUMMARY.json"), eval_logs.summary(logs))


TASK = base.Task(check=check, build=build, measurer=measurer, compare=compare, columns=COLUMNS,
                 cache_key=cache_key, load=load, initial=initial, variants=variants,
                 given=given, reference=reference, write=write)
