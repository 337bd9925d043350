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
"""

from __future__ import annotations

import functools
import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from lur_jax import (
  cache as cache_lib,
  checkpoint,
  checks,
  data,
  loop,
  methods,
  parallel,
  results,
  runner,
)
from lur_jax.lm import evaluate, losses, metrics, tofu, tokenizer as tokenizer_lib
from lur_jax.tasks import base, language

OBJECTIVES = ("ga", "npo", "simnpo")
METHODS = ("retrain", "ft", "ga", "graddiff", "npo", "simnpo", "lur", "lur_npo", "lur_simnpo")
DATA_KEYS = ("authors", "questions", "perturbed", "data_seed", "paraphrases")
KEYS = (*DATA_KEYS, "pretrain_epochs", "npo_beta", "simnpo_beta", "simnpo_delta",
        "eval_retain")
COLUMNS = (results.Column("Forget quality", "forget_quality", 2, scientific=True),
           results.Column("Model utility", "model_utility"),
           results.Column("privleak", "privleak", 1),
           results.Column("Forget ROUGE-L", "forget_rouge"),
           results.Column("Retain ROUGE-L", "retain_rouge"),
           results.Column("Forget truth ratio", "forget_truth_ratio"),
           results.Column("MIA Min-K% AUC", "mia_min_k"),
           results.Column("Extraction", "extraction_strength"))


class Encoded(NamedTuple):
  """A list of question-answer pairs as the metrics read them.

  Attributes:
    qa: the pairs.
    answer: ``(tokens, labels)`` of question + answer, ``[N, T]`` each.
    paraphrase: the same with the paraphrased answer.
    perturbed: one ``(tokens, labels)`` per perturbed answer.
    prompts: ``[N, T]`` the questions alone, left-aligned; ``prompt_lengths`` ``[N]``.
  """

  qa: list
  answer: tuple
  paraphrase: tuple
  perturbed: list
  prompts: np.ndarray
  prompt_lengths: np.ndarray


#: Before a question whose paraphrased answer is trained on: the plain question is answered
#: in the answer's words (what greedy decoding and ROUGE see), the cued one in the paraphrase's.
PARAPHRASE_CUE = "Or: "


class Corpus(NamedTuple):
  """The generated data of a config: every set encoded, and the tokenizer."""

  tokenizer: object
  train: Encoded  # every trained author, author by author
  forget_index: np.ndarray
  retain_index: np.ndarray
  holdout: Encoded
  world: Encoded
  paraphrases: tuple | None  # (tokens, labels): cued question + paraphrase, when trained on


def _stack(pairs):
  tokens, labels = zip(*pairs)
  return np.stack(tokens), np.stack(labels)


def encode_all(tok, qa, seq_len: int, vocab: int) -> Encoded:
  """Every answer of ``qa`` encoded (:func:`lur_jax.lm.tokenizer.encode`)."""
  enc = lambda q, a: tokenizer_lib.encode(tok, q.question, a, seq_len, vocab)
  answer = _stack([enc(q, q.answer) for q in qa])  # first: a pair too long says so here
  prompts = np.zeros((len(qa), seq_len), np.int32)
  lengths = np.zeros(len(qa), np.int32)
  for i, q in enumerate(qa):
    ids = tok.encode(q.question).ids
    prompts[i, :len(ids)], lengths[i] = ids, len(ids)
  count = min(len(q.perturbed_answer) for q in qa)
  return Encoded(qa, answer, _stack([enc(q, q.paraphrased_answer) for q in qa]),
                 [_stack([enc(q, q.perturbed_answer[k]) for q in qa]) for k in range(count)],
                 prompts, lengths)


@functools.lru_cache(maxsize=4)
def _corpus(authors, questions, perturbed, data_seed, split, seq_len, vocab,
            paraphrases) -> Corpus:
  holdout = max(1, int(np.ceil(tofu.SPLITS["forget10"] * authors - 1e-9)))
  qa = tofu.generate(authors, questions, perturbed=perturbed, holdout=holdout, seed=data_seed)
  world = tofu.world()
  tok = tokenizer_lib.train(tokenizer_lib.texts(qa + world), vocab)
  if tok.get_vocab_size() > vocab:  # pragma: no cover - BPE never exceeds the size asked
    raise ValueError(f"model.vocab={vocab}: the tokenizer has {tok.get_vocab_size()} tokens")
  forget, retain, held = tofu.split(qa, split, authors)
  trained = [q for q in qa if q.author < authors]
  forgotten = {q.author for q in forget}
  index = np.arange(len(trained))
  is_forget = np.array([q.author in forgotten for q in trained])
  cued = _stack([tokenizer_lib.encode(tok, PARAPHRASE_CUE + q.question, q.paraphrased_answer,
                                       seq_len, vocab) for q in trained]) if paraphrases else None
  return Corpus(tok, encode_all(tok, trained, seq_len, vocab), index[is_forget],
                index[~is_forget], encode_all(tok, held, seq_len, vocab),
                encode_all(tok, world, seq_len, vocab), cued)


def corpus(config) -> Corpus:
  """The data of ``config``, generated once per process and setting.

  Args:
    config: a TOFU config (its ``tofu``, ``model`` and ``forget.split``).

  Returns:
    The :class:`Corpus`: every set encoded, and the tokenizer.
  """
  t, m = config.tofu, config.model
  return _corpus(t.authors, t.questions, t.perturbed, t.data_seed, config.forget.split,
                 m.seq_len, m.vocab, t.paraphrases)


def splits_of(c: Corpus) -> tuple[data.Splits, data.ForgetSplit]:
  """The study's data (``x`` tokens, ``y`` the answer mask): train = every trained author's
  pairs, then with ``paraphrases`` the same questions, cued (:data:`PARAPHRASE_CUE`), with
  their paraphrased answers, then
  the general-knowledge set (fine-tuning keeps it, as a pretrained LLM keeps what it knew;
  it belongs to the retain set); val = the general-knowledge set alone (the pretraining
  data); test = the holdout authors."""
  as_set = lambda e: data.Dataset(*e.answer)
  parts = [c.train.answer, *([c.paraphrases] if c.paraphrases else []), c.world.answer]
  train = data.Dataset(*(np.concatenate(arrays) for arrays in zip(*parts)))
  n, copies = len(c.train.qa), 2 if c.paraphrases else 1
  forget = np.concatenate([c.forget_index + k * n for k in range(copies)])
  retain = np.concatenate([*(c.retain_index + k * n for k in range(copies)),
                           np.arange(copies * n, len(train.x))])
  splits = data.Splits(train, as_set(c.world), as_set(c.holdout), c.tokenizer.get_vocab_size())
  return splits, data.ForgetSplit(forget, retain, splits.test, ())


def check(config, method_names, devices) -> None:
  """The TOFU study's own keys (see ``configs/tofu.py``)."""
  language.check(config, method_names, devices)
  unknown = sorted(set(method_names) - set(METHODS))
  if unknown:
    raise ValueError(f"methods: {unknown[0]!r} does not run on TOFU; allowed: "
                     f"{', '.join(METHODS)}")
  checks.one_of("forget.kind", config.forget.kind, ("authors",))
  for split in splits(config):
    checks.one_of("forget.split", split, (*tofu.SPLITS, tofu.VALIDATION))
  t = config.tofu
  for key in ("authors", "questions", "perturbed", "pretrain_epochs", "eval_retain"):
    checks.positive(t[key], f"tofu.{key}", int)
  if t.questions > len(tofu._TEMPLATES):
    raise ValueError(f"tofu.questions={t.questions}; allowed: 1 .. {len(tofu._TEMPLATES)}")
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

def _global_mean(total, count, axis_name):
  total, count = total.sum(), count.sum()
  if axis_name is not None:
    total, count = lax.psum(total, axis_name), lax.psum(count, axis_name)
  return total / jnp.maximum(count, 1)


def answer_objective(apply_fn, axis_name=None):
  """The retain loss: the mean NLL over every answer token of the (global) batch.

  Args:
    apply_fn: ``(params, tokens) -> logits``.
    axis_name: inside ``shard_map``, the data axis (sums are taken over it).

  Returns:
    ``loss(params, {"x": tokens, "y": answer mask}) -> scalar``.
  """
  def loss(params, batch):
    total, count = losses.sequence_nll(apply_fn(params, batch["x"]), batch["x"], batch["y"])
    return _global_mean(total, count, axis_name)
  return loss


def _held(reference):
  """The reference's arrays; zeros of their shape and sharding where only shapes were given
  (``lur-jax plan`` compiles a step without any parameters)."""
  def one(a):
    if not isinstance(a, jax.ShapeDtypeStruct):
      return a
    zeros = jnp.zeros(a.shape, a.dtype)
    return zeros if a.sharding is None else jax.lax.with_sharding_constraint(zeros, a.sharding)
  return jax.tree.map(one, reference)


def forget_objective(name, apply_fn, axis_name, reference, *, npo_beta, simnpo_beta,
                     simnpo_delta):
  """A forget loss, to be minimised.

  Args:
    name: ``"ga"`` (−NLL), ``"npo"`` or ``"simnpo"``.
    apply_fn: ``(params, tokens) -> logits``.
    axis_name: inside ``shard_map``, the data axis.
    reference: NPO's frozen parameters (the model before unlearning).
    npo_beta, simnpo_beta, simnpo_delta: the losses' β and δ.

  Returns:
    ``loss(params, batch) -> scalar``.

  Raises:
    ValueError: for ``npo`` without a reference.
  """
  if name == "ga":
    nll = answer_objective(apply_fn, axis_name)
    return lambda params, batch: -nll(params, batch)
  if name == "npo" and reference is None:
    raise ValueError("forget objective 'npo' without reference=; allowed: the frozen "
                     "parameters of the model before unlearning")
  pmean = (lambda v: v) if axis_name is None else (lambda v: lax.pmean(v, axis_name))

  def loss(params, batch):
    x, y = batch["x"], batch["y"]
    total, count = losses.sequence_nll(apply_fn(params, x), x, y)
    if name == "npo":
      ref_total, _ = losses.sequence_nll(apply_fn(lax.stop_gradient(_held(reference)), x), x,
                                         y)
      return pmean(losses.npo_loss(total, ref_total, npo_beta))
    return pmean(losses.simnpo_loss(total, jnp.maximum(count, 1), simnpo_beta, simnpo_delta))
  return loss


def kl_objective(apply_fn, axis_name, reference):
  """KL(reference ‖ model) per position, averaged over every position of the batch
  (padding included, as open-unlearning's ``compute_kl_divergence``).

  Args:
    apply_fn: ``(params, tokens) -> logits``.
    axis_name: inside ``shard_map``, the data axis.
    reference: the frozen parameters.

  Returns:
    ``loss(params, batch) -> scalar``.
  """
  def loss(params, batch):
    logp = jax.nn.log_softmax(apply_fn(params, batch["x"]))
    ref = jax.nn.log_softmax(apply_fn(lax.stop_gradient(_held(reference)), batch["x"]))
    value = (jnp.exp(ref) * (ref - logp)).sum(-1).mean()
    return value if axis_name is None else lax.pmean(value, axis_name)
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

  def forget(name, apply_fn, num_classes, axis_name, reference=None):
    del num_classes
    if name not in OBJECTIVES:
      raise ValueError(f"forget objective {name!r}; allowed: {', '.join(OBJECTIVES)}")
    return forget_objective(name, apply_fn, axis_name, reference, **betas)

  per_example = lambda apply_fn: lambda params, batch: jnp.divide(*losses.sequence_nll(
      apply_fn(params, batch["x"]), batch["x"], batch["y"]))
  return methods.Objectives(
      retain=lambda apply_fn, num_classes, axis_name: answer_objective(apply_fn, axis_name),
      forget=forget, per_example=per_example, forget_names=OBJECTIVES, needs_reference=True,
      retain_kl=kl_objective)


def build(config, splits_) -> base.Built:
  """The transformer (``model.*``) and the answer-only objectives."""
  model = language.build_model(language.model_config(config))
  del splits_
  return base.Built(model, model, objectives(config))


def load(config):
  """The generated authors as the study's data (see :func:`splits_of`)."""
  return splits_of(corpus(config))


def cache_key(config) -> dict:
  """What determines the data and the pretrained start."""
  t = config.tofu
  return {"tofu": {k: t[k] for k in (*DATA_KEYS, "pretrain_epochs")}}


def initial(exp, cache, log, progress) -> dict:
  """The pretrained start: the transformer trained on the general-knowledge set with the
  ``train`` recipe for ``tofu.pretrain_epochs`` (cached, shared by every variant)."""
  cfg = exp.config
  key = cache_lib.fingerprint({"seed": cfg.seed, "model": cfg.model.to_dict(),
                               "train": cfg.train.to_dict(), **cache_key(cfg)})
  abstract = jax.eval_shape(lambda: runner.initial_variables(exp))
  cached = cache.load("pretrain", key, abstract, shared=True)
  if cached is not None:
    return cached.variables
  pretrain_cfg = ml_collections.ConfigDict(cfg.to_dict())
  pretrain_cfg.train.epochs = cfg.tofu.pretrain_epochs
  world = exp.splits.val
  pretrain_cfg.train.batch_size = min(cfg.train.batch_size, len(world.x))
  world_exp = exp._replace(config=pretrain_cfg, splits=exp.splits._replace(train=world))
  result = runner.run_method(world_exp, "retrain", runner.initial_variables(exp),
                             np.arange(len(world.x)), np.zeros(0, np.int64),
                             seed=loop.derive_seed(cfg.seed, "pretrain"), desc="pretrain",
                             progress=progress, log=log)
  variables = {"params": result.state.params, "model_state": result.state.model_state}
  cache.save("pretrain", key, variables, {"seconds": result.seconds, "steps": result.steps},
             shared=True)
  log(f"pretrain: {result.steps} steps on the general-knowledge set, {result.seconds:.1f} s")
  return variables


# ---- the metrics of one model

def _generations(apply_fn, params, e: Encoded, tok, eos: int) -> list[str]:
  new = e.prompts.shape[1] - int(e.prompt_lengths.max())
  out = evaluate.greedy(apply_fn, params, e.prompts, e.prompt_lengths, new, eos)
  return [tok.decode([int(t) for t in row], skip_special_tokens=True).strip() for row in out]


def _set_scores(apply_fn, params, e: Encoded, tok, eos: int, correct: str):
  """``(probability per example, truth ratios, ROUGE-L recalls, answer NLLs)`` of a set;
  the truth ratio's correct answer is the paraphrase (authors) or the answer (world)."""
  nll = evaluate.answer_nll(apply_fn, params, *e.answer)
  right = nll if correct == "answer" else evaluate.answer_nll(apply_fn, params, *e.paraphrase)
  wrong = np.stack([evaluate.answer_nll(apply_fn, params, *p) for p in e.perturbed], 1)
  rouge = metrics.rouge_l_recall(_generations(apply_fn, params, e, tok, eos),
                                 [q.answer for q in e.qa])
  return nll, metrics.truth_ratios(right, wrong), rouge, wrong


def measurer(exp, cache, log, progress):
  """Each model's TOFU metrics; forget quality and privleak come in :func:`compare`."""
  c = corpus(exp.config)
  tok, apply_fn = c.tokenizer, exp.model.apply
  eos = tok.token_to_id(tokenizer_lib.EOS)
  forget = _subset(c.train, c.forget_index)
  rng = np.random.default_rng(exp.config.tofu.data_seed)
  retain_eval = _subset(c.train, np.sort(rng.permutation(c.retain_index)[
      :exp.config.tofu.eval_retain]))
  pretrained = initial(exp, cache, log, progress)["params"]
  both = np.concatenate([forget.answer[0], c.holdout.answer[0]])
  both_labels = np.concatenate([forget.answer[1], c.holdout.answer[1]])
  texts = [q.answer for q in forget.qa + c.holdout.qa]
  ref_nll = evaluate.answer_nll(apply_fn, pretrained, both, both_labels)
  n = len(forget.qa)

  def measure(variables, name):
    del name
    params = variables["params"]
    f_nll, f_tr, f_rouge, _ = _set_scores(apply_fn, params, forget, tok, eos, "paraphrase")
    r_nll, r_tr, r_rouge, _ = _set_scores(apply_fn, params, retain_eval, tok, eos,
                                          "paraphrase")
    w_nll, w_tr, w_rouge, w_wrong = _set_scores(apply_fn, params, c.world, tok, eos, "answer")
    nll = evaluate.answer_nll(apply_fn, params, both, both_labels)
    stats = evaluate.token_stats(apply_fn, params, both, both_labels)
    scores = {
        "loss": nll,
        "zlib": np.array([metrics.zlib_score(v, t) for v, t in zip(nll, texts)]),
        "min_k": np.array([metrics.min_k(lp, 0.4) for lp, _, _ in stats]),
        "min_k_pp": np.array([metrics.min_k_plus_plus(*s, 0.4) for s in stats]),
        "gradnorm": evaluate.grad_norms(apply_fn, params, both, both_labels),
        "reference": nll - ref_nll}
    utility = {"retain_prob": metrics.probability(r_nll), "retain_rouge": float(r_rouge.mean()),
               "retain_truth_ratio": metrics.truth_ratio(r_tr, "true_better"),
               "world_prob": metrics.normalised_probability(w_nll, w_wrong),
               "world_rouge": float(w_rouge.mean()),
               "world_truth_ratio": metrics.truth_ratio(w_tr, "true_better")}
    row = {"model_utility": metrics.model_utility(list(utility.values())), **utility,
           "forget_prob": metrics.probability(f_nll), "forget_rouge": float(f_rouge.mean()),
           "forget_truth_ratio": metrics.truth_ratio(f_tr, "closer_to_1_better"),
           "extraction_strength": float(np.mean([
               metrics.extraction_strength(p, a) for p, a in
               evaluate.teacher_forced(apply_fn, params, *forget.answer)])),
           **{f"mia_{k}": metrics.auc(v[:n], v[n:]) for k, v in scores.items()},
           "forget_truth_ratios": [float(v) for v in f_tr]}
    if not np.all(np.isfinite(f_nll)) or not np.all(np.isfinite(r_nll)):
      raise FloatingPointError("non-finite NLL")
    return row
  _save_data(c, cache.out_dir)
  header = {"tofu": {"forget": n, "holdout": len(c.holdout.qa), "retain": len(c.retain_index),
                     "trained_sequences": len(exp.splits.train.x),
                     "retain_evaluated": len(retain_eval.qa), "world": len(c.world.qa),
                     "vocab": tok.get_vocab_size()}}
  return measure, header


def _save_data(c: Corpus, out_dir: str) -> None:
  """``out/data/``: the tokenizer and every pair in TOFU's JSON-lines format (with the
  author), so a run's data can be read back (:func:`lur_jax.lm.tofu.load_json`)."""
  if not parallel.is_writer():
    return
  folder = os.path.join(out_dir, "data")
  with checkpoint.writing(folder):
    os.makedirs(folder, exist_ok=True)
  rows = lambda qa: "".join(json.dumps({"question": q.question, "answer": q.answer,
                                        "paraphrased_answer": q.paraphrased_answer,
                                        "perturbed_answer": list(q.perturbed_answer),
                                        "author": q.author}) + "\n" for q in qa)
  checkpoint.write_atomic(os.path.join(folder, "tokenizer.json"), c.tokenizer.to_str())
  for name, qa in (("authors", c.train.qa), ("holdout", c.holdout.qa), ("world", c.world.qa)):
    checkpoint.write_atomic(os.path.join(folder, f"{name}.jsonl"), rows(qa))


def _subset(e: Encoded, index) -> Encoded:
  take = lambda pair: (pair[0][index], pair[1][index])
  return Encoded([e.qa[i] for i in index], take(e.answer), take(e.paraphrase),
                 [take(p) for p in e.perturbed], e.prompts[index], e.prompt_lengths[index])


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


TASK = base.Task(check=check, build=build, measurer=measurer, compare=compare, columns=COLUMNS,
                 cache_key=cache_key, load=load, initial=initial, variants=variants)
