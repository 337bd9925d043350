"""One model's TOFU metrics, as open-unlearning reports them, from a :mod:`corpus`."""

from __future__ import annotations

import numpy as np

from lur_jax.lm import corpus as corpus_lib, evaluate, metrics, tokenizer as tokenizer_lib
from lur_jax.lm.corpus import Encoded


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


def scorer(apply_fn, c: corpus_lib.Corpus, pretrained, seed: int, eval_retain: int,
           trained_sequences: int):
  """``(measure, header)``: ``measure(variables, name) -> row`` of one model's metrics.

  Args:
    apply_fn: the model, ``(params, tokens) -> logits``.
    c: the data (:class:`~lur_jax.lm.corpus.Corpus`).
    pretrained: the Reference attack's reference parameters (never saw an author).
    seed: draws the retain pairs scored for utility.
    eval_retain: how many.
    trained_sequences: recorded in the header.

  Returns:
    The measure, and a header for results.json (the sets' sizes).
  """
  tok = c.tokenizer
  eos = tok.token_to_id(tokenizer_lib.EOS)
  forget = corpus_lib.subset(c.train, c.forget_index)
  rng = np.random.default_rng(seed)
  retain_eval = corpus_lib.subset(c.train, np.sort(rng.permutation(c.retain_index)[
      :eval_retain]))
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
    # the forget set's answer NLLs are f_nll already: only the holdout's are new
    nll = np.concatenate([f_nll, evaluate.answer_nll(apply_fn, params, *c.holdout.answer)])
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
  header = {"tofu": {"forget": n, "holdout": len(c.holdout.qa), "retain": len(c.retain_index),
                     "trained_sequences": trained_sequences,
                     "retain_evaluated": len(retain_eval.qa), "world": len(c.world.qa),
                     "vocab": tok.get_vocab_size()}}
  return measure, header


