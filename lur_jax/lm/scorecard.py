"""One model's TOFU metrics, as open-unlearning reports them, on the :class:`Sets` of a study
(the generated authors of :mod:`~lur_jax.lm.corpus`, or TOFU's own files,
:mod:`~lur_jax.lm.tofu_files`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lur_jax.lm import corpus as corpus_lib, evaluate, metrics, tokenizer as tokenizer_lib
from lur_jax.lm.corpus import Encoded


class Sets(NamedTuple):
  """What a model is scored on.

  Attributes:
    forget: the forget pairs, with their paraphrased and perturbed answers.
    retain: the retain pairs scored for model utility.
    holdout: pairs never trained on: the membership attacks' non-members.
    world: world facts (truth ratio and probability against the answer itself).
    real_authors: real authors (the same), or ``None`` (the generated world has none).
    decode: ``(tokens, labels) -> text`` of the labelled tokens (ZLib's text).
    detokenize: ``ids -> text`` of generated tokens, special tokens dropped (ROUGE's).
    eos: the end-of-sequence token.
  """

  forget: Encoded
  retain: Encoded
  holdout: Encoded
  world: Encoded
  real_authors: Encoded | None
  decode: Callable
  detokenize: Callable
  eos: int


def corpus_sets(c: corpus_lib.Corpus, seed: int, eval_retain: int) -> Sets:
  """The sets a model of the generated world is scored on: the forget authors,
  ``eval_retain`` retain pairs drawn with ``seed``, the holdout authors and the
  general-knowledge set."""
  rng = np.random.default_rng(seed)
  retain = corpus_lib.subset(c.train, np.sort(rng.permutation(c.retain_index)[:eval_retain]))
  detokenize = lambda ids: c.tokenizer.decode(ids, skip_special_tokens=True)
  decode = lambda tokens, labels: detokenize([int(t) for t in np.asarray(tokens)[
      np.asarray(labels, bool)]])
  return Sets(corpus_lib.subset(c.train, c.forget_index), retain, c.holdout, c.world, None,
              decode, detokenize, c.tokenizer.token_to_id(tokenizer_lib.EOS))


def _generations(generate, params, e: Encoded, sets: Sets, max_new: int, batch: int) -> list[str]:
  new = min(max_new, e.prompts.shape[1] - int(e.prompt_lengths.max()))
  out = np.concatenate([np.asarray(generate(params, e.prompts[i:i + batch],
                                            e.prompt_lengths[i:i + batch], new, sets.eos))
                        for i in range(0, len(e.prompts), batch)])
  return [sets.detokenize([int(t) for t in row]).strip() for row in out]


def _set_scores(apply_fn, generate, params, e: Encoded, sets: Sets, correct: str, max_new: int,
                batch: int):
  """``(answer NLLs, truth ratios, ROUGE-L recalls, perturbed NLLs)`` of a set; the truth
  ratio's correct answer is the paraphrase (authors) or the answer (world, real authors)."""
  nll_of = lambda pair: evaluate.answer_nll(apply_fn, params, *pair, chunk=batch)
  nll = nll_of(e.answer)
  right = nll if correct == "answer" else nll_of(e.paraphrase)
  wrong = np.stack([nll_of(p) for p in e.perturbed], 1)
  rouge = metrics.rouge_l_recall(_generations(generate, params, e, sets, max_new, batch),
                                 [q.answer for q in e.qa])
  return nll, metrics.truth_ratios(right, wrong), rouge, wrong


def _utility(apply_fn, generate, params, sets: Sets, max_new: int, batch: int) -> dict:
  """Model utility's numbers: retain probability, ROUGE and truth ratio, then the same
  (normalised probability) of the world facts and, where there are some, the real authors."""
  r_nll, r_tr, r_rouge, _ = _set_scores(apply_fn, generate, params, sets.retain, sets,
                                        "paraphrase", max_new, batch)
  out = {"retain_prob": metrics.probability(r_nll), "retain_rouge": float(r_rouge.mean()),
         "retain_truth_ratio": metrics.truth_ratio(r_tr, "true_better")}
  if not np.all(np.isfinite(r_nll)):
    raise FloatingPointError("non-finite NLL")
  general = [("world", sets.world), ("real", sets.real_authors)]
  for prefix, e in [(p, e) for p, e in general if e is not None]:
    nll, tr, rouge, wrong = _set_scores(apply_fn, generate, params, e, sets, "answer", max_new,
                                        batch)
    out.update({f"{prefix}_prob": metrics.normalised_probability(nll, wrong),
                f"{prefix}_rouge": float(rouge.mean()),
                f"{prefix}_truth_ratio": metrics.truth_ratio(tr, "true_better")})
  return out


def scorer(apply_fn, sets: Sets, reference=None, generate=None, max_new: int = 200,
           batch: int = 256):
  """``measure(variables, name) -> row`` of one model's metrics.

  Args:
    apply_fn: the model, ``(params, tokens) -> logits``.
    sets: what it is scored on.
    reference: the Reference attack's parameters (a model that never saw an author), or
      ``None`` to leave that attack out.
    generate: ``(params, prompts, lengths, max_new, eos) -> tokens``, greedy decoding
      (default :func:`lur_jax.lm.evaluate.greedy` on ``apply_fn``; a decoder's own uses its
      KV cache).
    max_new: the most tokens generated per answer (open-unlearning's 200).
    batch: examples per compiled call (each holds ``batch × T × vocab`` logits).

  Returns:
    The measure.
  """
  generate = generate or (lambda params, *args: evaluate.greedy(apply_fn, params, *args))
  forget, holdout = sets.forget, sets.holdout
  both = np.concatenate([forget.answer[0], holdout.answer[0]])
  both_labels = np.concatenate([forget.answer[1], holdout.answer[1]])
  texts = [sets.decode(t, m) for t, m in zip(both, both_labels)]
  ref_nll = None if reference is None else evaluate.answer_nll(apply_fn, reference, both,
                                                                both_labels, chunk=batch)
  n = len(forget.qa)

  def measure(variables, name):
    del name
    params = variables["params"]
    f_nll, f_tr, f_rouge, _ = _set_scores(apply_fn, generate, params, forget, sets,
                                          "paraphrase", max_new, batch)
    if not np.all(np.isfinite(f_nll)):
      raise FloatingPointError("non-finite NLL")
    utility = _utility(apply_fn, generate, params, sets, max_new, batch)
    # the forget set's answer NLLs are f_nll already: only the holdout's are new
    nll = np.concatenate([f_nll, evaluate.answer_nll(apply_fn, params, *holdout.answer,
                                                     chunk=batch)])
    stats = evaluate.token_stats(apply_fn, params, both, both_labels, chunk=batch)
    scores = {
        "loss": nll,
        "zlib": np.array([metrics.zlib_score(v, t) for v, t in zip(nll, texts)]),
        "min_k": np.array([metrics.min_k(lp, 0.4) for lp, _, _ in stats]),
        "min_k_pp": np.array([metrics.min_k_plus_plus(*s, 0.4) for s in stats]),
        "gradnorm": evaluate.grad_norms(apply_fn, params, both, both_labels,
                                        chunk=min(32, batch)),
        **({} if ref_nll is None else {"reference": nll - ref_nll})}
    return {"model_utility": metrics.model_utility(list(utility.values())), **utility,
            "forget_prob": metrics.probability(f_nll), "forget_rouge": float(f_rouge.mean()),
            "forget_truth_ratio": metrics.truth_ratio(f_tr, "closer_to_1_better"),
            "extraction_strength": float(np.mean([
                metrics.extraction_strength(p, a) for p, a in
                evaluate.teacher_forced(apply_fn, params, *forget.answer, chunk=batch)])),
            **{f"mia_{k}": metrics.auc(v[:n], v[n:]) for k, v in scores.items()},
            "forget_truth_ratios": [float(v) for v in f_tr]}
  return measure


def header(sets: Sets, **extra) -> dict:
  """The sets' sizes, for results.json."""
  sizes = {"forget": len(sets.forget.qa), "holdout": len(sets.holdout.qa),
           "retain_evaluated": len(sets.retain.qa), "world": len(sets.world.qa)}
  if sets.real_authors is not None:
    sizes["real_authors"] = len(sets.real_authors.qa)
  return {"tofu": {**sizes, **extra}}
