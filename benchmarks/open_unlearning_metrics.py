"""lur_jax's TOFU metrics against open-unlearning's own metric code, on the same model.

    pip install -e ".[bench]"                          # torch, never a library dependency
    git clone https://github.com/locuslab/open-unlearning /path/to/open-unlearning
    python benchmarks/open_unlearning_metrics.py --repo /path/to/open-unlearning

A small causal model (token embedding, a causal running mean, a linear head), its weights
drawn once and held by both frameworks in float64, scores random question-answer sequences
(prompt masked, answer and EOS labelled, padding): open-unlearning's functions
(``src/evals/metrics``: ``evaluate_probability``, ``truth_ratio``, ``probability_w_options``,
``ks_test``, ``privleak``, ``hm_aggregate``, ``extraction_strength``, ``eval_text_similarity``
and the six attack classes with ``mia_auc``) run in PyTorch on CPU, imported from the copy
given on the command line (the Hugging Face, Hydra and dataset modules they import but these
functions do not call are stubbed); lur_jax's run in JAX. Every per-example number and every
aggregate is compared; the largest absolute difference is reported.

Writes ``benchmarks/results/open_unlearning_metrics.{json,md}``.
"""

import argparse
import os
import subprocess
import sys
import types

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lur_jax.lm import evaluate, metrics  # noqa: E402
from lur_jax.study import results  # noqa: E402
from lur_jax.training import checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, D, T, N, PERTURBED = 48, 16, 24, 40, 5
PAD, EOS, IGNORE = 0, 1, -100


def import_open_unlearning(repo: str) -> dict:
  """open-unlearning's metric modules, imported without their packages' ``__init__``."""
  src = os.path.join(repo, "src")
  if not os.path.isfile(os.path.join(src, "evals", "metrics", "utils.py")):
    raise SystemExit(f"--repo {repo!r}: no src/evals/metrics/utils.py; allowed: a checkout of "
                     "locuslab/open-unlearning")
  stub = lambda name, **attrs: sys.modules.setdefault(name, types.SimpleNamespace(**attrs))
  stub("transformers", StoppingCriteria=object, StoppingCriteriaList=list,
       PreTrainedTokenizer=object, AutoModelForCausalLM=None, AutoTokenizer=None,
       AutoModelForSequenceClassification=None)
  stub("omegaconf", OmegaConf=types.SimpleNamespace(to_container=lambda c, resolve: dict(c)))
  stub("data", get_datasets=None, get_collators=None)
  stub("data.utils", IGNORE_INDEX=IGNORE)
  for package in ("evals", "evals.metrics", "evals.metrics.mia"):
    module = types.ModuleType(package)
    module.__path__ = [os.path.join(src, *package.split("."))]
    sys.modules[package] = module
  import importlib

  names = ("utils", "memorization", "privacy", "utility", "mia.utils")
  return {n: importlib.import_module(f"evals.metrics.{n}") for n in names}


# ---- the model, in both frameworks: logits_t = head(mean(embed(x_0..t))) + bias

def jax_apply(params, x):
  h = params["embed"][x]
  h = jnp.cumsum(h, 1) / jnp.arange(1, x.shape[1] + 1)[:, None]
  return jnp.tanh(h) @ params["head"] + params["bias"]


class TorchModel(torch.nn.Module):
  def __init__(self, params):
    super().__init__()
    self.embed = torch.nn.Parameter(torch.tensor(np.asarray(params["embed"])))
    self.head = torch.nn.Parameter(torch.tensor(np.asarray(params["head"])))
    self.bias = torch.nn.Parameter(torch.tensor(np.asarray(params["bias"])))
    self.device = torch.device("cpu")

  def forward(self, input_ids, **kwargs):
    h = self.embed[input_ids]
    h = torch.cumsum(h, 1) / torch.arange(1, input_ids.shape[1] + 1)[:, None]
    return types.SimpleNamespace(logits=torch.tanh(h) @ self.head + self.bias)

  def generate(self, input_ids, attention_mask=None, max_new_tokens=8, pad_token_id=EOS,
               **kwargs):
    """Hugging Face's greedy search: the argmax token, ``pad_token_id`` once EOS was made."""
    out, done = input_ids, torch.zeros(len(input_ids), dtype=torch.bool)
    for _ in range(max_new_tokens):
      token = torch.where(done, pad_token_id, self(out).logits[:, -1].argmax(-1))
      out, done = torch.cat([out, token[:, None]], 1), done | (token == EOS)
    return out


def make_params(seed):
  rng = np.random.default_rng(seed)
  return {"embed": rng.normal(size=(V, D)) * 2, "head": rng.normal(size=(D, V)) * 2,
          "bias": rng.normal(size=V)}


def sequences(rng, prompts, answers):
  tokens = np.full((len(prompts), T), PAD, np.int64)
  labels = np.zeros((len(prompts), T), bool)
  for i, (p, a) in enumerate(zip(prompts, answers)):
    row = [*p, *a, EOS]
    tokens[i, :len(row)] = row
    labels[i, len(p):len(row)] = True
  return tokens, labels


def draw(rng, count, lo=3, hi=12):
  return [rng.integers(2, V, rng.integers(lo, hi)) for _ in range(count)]


class Tokenizer:
  """Word ``w<id>`` per token; PAD and EOS special (what ZLib and ROUGE decode)."""
  eos_token_id = EOS

  def decode(self, ids, skip_special_tokens=False, **kwargs):
    ids = [int(i) for i in ids]
    return " ".join("<eos>" if i == EOS else "<pad>" if i == PAD else f"w{i}" for i in ids
                    if not (skip_special_tokens and i in (PAD, EOS)))

  def batch_decode(self, rows, **kwargs):
    return [self.decode(r, **kwargs) for r in rows]


def batches(tokens, labels, size=16):
  """open-unlearning's collated batches: ``labels`` −100 where masked, with ``index``."""
  data = [{"input_ids": torch.tensor(t), "attention_mask": torch.tensor(t != PAD),
           "labels": torch.tensor(np.where(m, t, IGNORE)), "index": torch.tensor(i)}
          for i, (t, m) in enumerate(zip(tokens, labels))]
  collate = lambda rows: {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
  return data, collate, size


def compare(ou, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  params = {k: jnp.asarray(v) for k, v in make_params(seed).items()}
  ref_params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in params.items()}
  model, ref_model = TorchModel(params), TorchModel(ref_params)
  prompts = draw(rng, 2 * N, 3, 7)
  answers = draw(rng, 2 * N)
  tokens, labels = sequences(rng, prompts, answers)  # forget: the first N; holdout: the rest
  para = sequences(rng, prompts[:N], draw(rng, N))
  pert = [sequences(rng, prompts[:N], draw(rng, N)) for _ in range(PERTURBED)]
  ut, um = ou["utils"], ou["memorization"]
  rows = []

  def record(name, ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    rows.append({"metric": name, "seed": seed, "n": int(ours.size),
                 "max_abs_diff": float(np.max(np.abs(ours - theirs))),
                 "ours": float(ours.mean()), "open_unlearning": float(theirs.mean())})

  def their_evals(t, m):
    data, collate, size = batches(t, m)
    loader = torch.utils.data.DataLoader(data, batch_size=size, collate_fn=collate)
    return ut.run_batchwise_evals(model, loader, ut.evaluate_probability, {}, "loss")

  forget = their_evals(tokens[:N], labels[:N])
  ours_nll = evaluate.answer_nll(jax_apply, params, tokens[:N], labels[:N])
  record("answer NLL (avg_loss)", ours_nll, [forget[i]["avg_loss"] for i in range(N)])
  record("probability", metrics.probability(ours_nll),
         np.mean([forget[i]["prob"] for i in range(N)]))

  correct = their_evals(*para)
  wrong_runs = [their_evals(*p) for p in pert]
  wrong = {i: {"avg_loss": [w[i]["avg_loss"] for w in wrong_runs],
               "prob": [w[i]["prob"] for w in wrong_runs]} for i in range(N)}
  ours_correct = evaluate.answer_nll(jax_apply, params, *para)
  ours_wrong = np.stack([evaluate.answer_nll(jax_apply, params, *p) for p in pert], 1)
  ratios = metrics.truth_ratios(ours_correct, ours_wrong)
  pre = {"correct": {"value_by_index": correct}, "wrong": {"value_by_index": wrong}}
  for aggregation in metrics.AGGREGATIONS:
    theirs = um.truth_ratio.evaluate_metric(None, None, pre_compute=pre, aggregator=aggregation)
    record(f"truth ratio ({aggregation})", metrics.truth_ratio(ratios, aggregation),
           theirs["agg_value"])
  theirs_tr = um.truth_ratio.evaluate_metric(None, None, pre_compute=pre,
                                             aggregator="true_better")["value_by_index"]
  record("truth ratios (per question)", ratios, [theirs_tr[i]["score"] for i in range(N)])
  record("normalised probability", metrics.normalised_probability(ours_correct, ours_wrong),
         um.probability_w_options.evaluate_metric(None, None, pre_compute=pre)["agg_value"])

  # forget quality: the truth ratios of this model against those of the reference model
  ref_ratios = metrics.truth_ratios(evaluate.answer_nll(jax_apply, ref_params, *para),
                                    np.stack([evaluate.answer_nll(jax_apply, ref_params, *p)
                                              for p in pert], 1))
  by_index = lambda r: {str(i): {"score": float(v)} for i, v in enumerate(r)}
  theirs = ou["privacy"].ks_test.evaluate_metric(
      None, None, pre_compute={"forget": {"value_by_index": by_index(ratios)}},
      reference_logs={"retain_model_logs": {"retain": {"value_by_index": by_index(ref_ratios)}}})
  record("forget quality (KS p-value)", metrics.forget_quality(ratios, ref_ratios),
         theirs["agg_value"])

  data, collate, size = batches(tokens[:N], labels[:N])
  theirs = um.extraction_strength.evaluate_metric(model, None, data=data, collators=collate,
                                                  batch_size=size)["value_by_index"]
  record("extraction strength", [metrics.extraction_strength(p, a) for p, a in
                                 evaluate.teacher_forced(jax_apply, params, tokens[:N],
                                                         labels[:N])],
         [theirs[i]["score"] for i in range(N)])

  # ROUGE-L recall of greedy generations from the prompts (their generate is the same argmax)
  new = 8
  prompt_tokens = np.full((N, T), PAD, np.int64)
  for i, p in enumerate(prompts[:N]):
    prompt_tokens[i, :len(p)] = p
  generated = evaluate.greedy(jax_apply, params, prompt_tokens,
                              np.array([len(p) for p in prompts[:N]]), new, EOS)
  tok = Tokenizer()
  ours_rouge = metrics.rouge_l_recall([tok.decode(g, skip_special_tokens=True)
                                       for g in generated],
                                      [tok.decode(a) for a in answers[:N]])
  theirs = []
  for i, p in enumerate(prompts[:N]):  # one prompt a batch: no left padding needed
    batch = {"input_ids": torch.tensor(p)[None], "attention_mask": torch.ones(1, len(p)),
             "labels": torch.tensor(np.r_[answers[i], EOS])[None]}
    theirs.append(ut.eval_text_similarity(model, tok, batch, {"max_new_tokens": new})[0]
                  ["rougeL_recall"])
  record("ROUGE-L recall (greedy)", ours_rouge, theirs)

  # the membership attacks, forget (members) vs holdout (non-members)
  stats = evaluate.token_stats(jax_apply, params, tokens, labels)
  nll = evaluate.answer_nll(jax_apply, params, tokens, labels)
  texts = [tok.decode(t[m], skip_special_tokens=True) for t, m in zip(tokens, labels)]
  ours = {
      "loss": nll,
      "zlib": [metrics.zlib_score(v, s) for v, s in zip(nll, texts)],
      "min_k": [metrics.min_k(lp, 0.4) for lp, _, _ in stats],
      "min_k++": [metrics.min_k_plus_plus(lp, mu, var, 0.4) for lp, mu, var in stats],
      "gradnorm": evaluate.grad_norms(jax_apply, params, tokens, labels),
      "ref": nll - evaluate.answer_nll(jax_apply, ref_params, tokens, labels)}
  mia = ou["mia.utils"]
  forget_data = batches(tokens[:N], labels[:N])
  holdout_data = batches(tokens[N:], labels[N:])
  extra = {"min_k": {"k": 0.4}, "min_k++": {"k": 0.4}, "gradnorm": {"p": 2},
           "zlib": {"tokenizer": tok}, "ref": {"reference_model": ref_model}}
  aucs = {}
  for attack, scores in ours.items():
    out = mia.mia_auc(mia.get_attacker(attack), model,
                      data={"forget": forget_data[0], "holdout": holdout_data[0]},
                      collator=forget_data[1],
                      # their GradNorm backpropagates each example of one forward: batch 1, as
                      # configs/eval/tofu_metrics/mia_gradnorm.yaml sets
                      batch_size=1 if attack == "gradnorm" else forget_data[2],
                      **extra.get(attack, {}))
    theirs = [out[s]["value_by_index"][str(i)]["score"] for s in ("forget", "holdout")
              for i in range(N)]
    record(f"MIA {attack} (per example)", scores, theirs)
    aucs[attack] = metrics.auc(np.asarray(scores)[:N], np.asarray(scores)[N:])
    record(f"MIA {attack} AUC", aucs[attack], out["auc"])

  ref_auc = 0.37
  theirs = ou["privacy"].privleak.evaluate_metric(
      None, None, pre_compute={"forget": {"agg_value": aucs["min_k"]}},
      reference_logs={"retain_model_logs": {"retain": {"agg_value": ref_auc}}}, ref_value=0.5)
  record("privleak", metrics.privleak(aucs["min_k"], ref_auc), theirs["agg_value"])
  nine = rng.uniform(0.05, 1, 9)
  theirs = ou["utility"].hm_aggregate.evaluate_metric(
      None, None, pre_compute={str(i): {"agg_value": v} for i, v in enumerate(nine)})
  record("model utility (harmonic mean)", metrics.model_utility(nine), theirs["agg_value"])
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repo", required=True, help="a checkout of locuslab/open-unlearning")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
  args = parser.parse_args()
  ou = import_open_unlearning(args.repo)
  torch.set_default_dtype(torch.float64)
  rows = [r for seed in range(args.seeds) for r in compare(ou, seed)]
  commit = subprocess.run(["git", "-C", args.repo, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "unknown (not a git checkout)"
  worst = {}
  for r in rows:
    w = worst.setdefault(r["metric"], {**r, "seeds": 0})
    w["max_abs_diff"] = max(w["max_abs_diff"], r["max_abs_diff"])
    w["seeds"] += 1
  meta = {"device": results.device_description(), "torch": torch.__version__,
          "open_unlearning_commit": commit, "versions": results.versions(),
          "seeds": args.seeds, "dtype": "float64"}
  lines = [f"lur_jax's TOFU metrics vs open-unlearning's metric code ({commit[:12]}), the same "
           f"float64 model and data, {args.seeds} seeds; torch {meta['torch']} on "
           f"{meta['device']}. `python benchmarks/open_unlearning_metrics.py --repo PATH`.", "",
           "| metric | values per seed | largest abs. difference | seed 0: lur_jax | seed 0: "
           "open-unlearning |", "|---|---|---|---|---|"]
  first = {r["metric"]: r for r in rows if r["seed"] == 0}
  for name, w in worst.items():
    lines.append(f"| {name} | {w['n']} | {w['max_abs_diff']:.1e} | {first[name]['ours']:.6g} | "
                 f"{first[name]['open_unlearning']:.6g} |")
  lines += ["", "Min-K%, Min-K%++ and GradNorm differ by float32 rounding alone: open-unlearning casts "
            "those scores to float32 (`.float()`, `.to(torch.float32)`) before ranking them; "
            "every other number is computed in float64 on both sides."]
  base = os.path.join(args.out, "open_unlearning_metrics")
  checkpoint.write_json(base + ".json", {**meta, "rows": rows})
  checkpoint.write_atomic(base + ".md", "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
