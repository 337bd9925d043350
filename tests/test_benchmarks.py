"""The step-cost benchmark and the PyTorch reference measure what they claim."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))

import step_cost  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.study
def test_step_cost_records_hold_every_key():
  record = step_cost.measure("mlp", "exact", (16, 8), 2, False, 2)
  for key in ("model", "mode", "inner_steps", "remat", "batch", "median_ms", "min_ms",
              "compile_s", "peak_bytes", "flops"):
    assert record[key] is not None, key
  assert record["min_ms"] <= record["median_ms"]
  assert record["flops"] > 0 and record["peak_bytes"] > 0
  graddiff = step_cost.measure("mlp", "graddiff", (16, 8), 1, False, 2)
  assert record["flops"] > graddiff["flops"]  # the lookahead costs more passes
  # remat with K > 1 runs a loop, whose body XLA's cost analysis counts once: no FLOPs.
  looped = step_cost.measure("mlp", "exact", (16, 8), 2, True, 2)
  assert looped["flops"] is None and looped["peak_bytes"] > 0


@pytest.mark.study
def test_step_cost_exact_and_hvp_agree():
  for k in (1, 2):
    assert step_cost.exact_vs_hvp(*step_cost._problem("mlp", 16, 8), k) < 1e-5


def test_step_cost_quick_plan_is_a_subset():
  quick = {p[:5] for p in step_cost.plan(True, ["mlp", "cnn", "resnet18"])}
  full = {p[:5] for p in step_cost.plan(False, ["mlp", "cnn", "resnet18"])}
  assert quick < full
  assert {p[1] for p in quick} == set(step_cost.MODES)


def test_torch_reference_agrees_with_jax_in_float64():
  pytest.importorskip("torch", reason="the bench extra (pip install -e '.[bench]')")
  import torch_reference  # pylint: disable=g-import-not-at-top
  record = torch_reference.compare("mlp", quick=True)
  assert record["max_rel_diff_autograd_vs_jax"] < 1e-10
  assert record["max_rel_diff_func_vs_jax"] < 1e-10


def test_the_torch_transformer_is_lur_jaxs_transformer():
  """benchmarks/torch_gpt.py, from the same weights: the loss, and the GradDiff, hvp and exact
  gradients of a tiny transformer, within float32 round-off."""
  torch = pytest.importorskip("torch", reason="the bench extra (pip install -e '.[bench]')")
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch_gpt  # pylint: disable=g-import-not-at-top
  import torch_reference  # pylint: disable=g-import-not-at-top

  from lur_jax.models import transformer  # pylint: disable=g-import-not-at-top
  model = transformer.Transformer(transformer.TransformerConfig(
      vocab=64, width=32, depth=2, heads=2, seq_len=16))
  tokens = np.random.default_rng(0).integers(0, 64, (2, 3, 16))
  params = jax.tree.map(np.asarray, nn.unbox(model.init(jax.random.key(0),
                                                        jnp.asarray(tokens[0]))["params"]))
  loss = transformer.lm_objective(lambda p, x: model.apply({"params": p}, x))
  flat = {k: torch.tensor(v).requires_grad_() for k, v in torch_reference._flat(params).items()}
  np.testing.assert_allclose(float(torch_gpt.loss(flat, torch.tensor(tokens[0]))),
                             float(loss(params, {"x": jnp.asarray(tokens[0])})), rtol=1e-6)
  r, f = ({"x": jnp.asarray(t)} for t in tokens)
  for mode, grads in (("hvp", torch_gpt.hvp_grads), ("exact", torch_gpt.exact_grads)):
    want = torch_reference._flat(torch_reference._lur_grads(loss, mode, params, r, f))
    got = grads(flat, *map(torch.tensor, tokens), torch_reference.INNER_LR,
                torch_reference.FORGET_WEIGHT)
    diff = torch_reference._max_rel_diff({k: v.detach().numpy() for k, v in got.items()},
                                         {k: np.asarray(v) for k, v in want.items()})
    assert diff < 1e-4, (mode, diff)


def test_verdict_summary_shows_the_audit_where_a_part_was_audited():
  import verdict  # pylint: disable=g-import-not-at-top
  d = {"value": 0.1, "low": -0.1, "high": 0.3, "verdict": "no measurable difference"}
  compare = {"lur": "lur-ga", "graddiff": "graddiff-ga", "best_baseline": "ft",
             "lur_minus_graddiff": d, "lur_minus_best_baseline": d}
  audit = {"lur_minus_graddiff": {"value": 0.2885, "low": 0.2765, "high": 0.3,
                                  "verdict": "worse"}}
  table = verdict._summary({"a": {"compare": compare, "cold_wall_seconds": 60},
                            "b": {"compare": compare}}, {"a": {"audit": audit}, "b": {}})
  header, _, audited, not_audited = table.splitlines()
  assert header.count("|") == audited.count("|") == not_audited.count("|")
  assert audited.endswith("| +28.85 [+27.65, +30.00] | worse | 1.0 |")
  assert not_audited.endswith("| – | not audited | – |")


def test_verdict_replicates_side_by_side_say_where_the_verdicts_differ(tmp_path):
  import verdict  # pylint: disable=g-import-not-at-top

  from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top

  def diff(value, word):
    return {"value": value, "low": value - 0.1, "high": value + 0.1, "verdict": word}

  def replicate(folder, seed, draws, ladder_word):
    compare = {"lur": "lur-ga", "graddiff": "graddiff-ga", "best_baseline": "ft",
               "lur_minus_graddiff": diff(-0.5, "better"),
               "lur_minus_best_baseline": diff(0.0, "no measurable difference"),
               "ladder": {"lur-ga": {"reference": "graddiff-ga", **diff(0.3, ladder_word)}}}
    checkpoint.write_json(str(folder / "verdict" / "summary.json"),
                          {"p": {"compare": compare, "cold_wall_seconds": 120}})
    checkpoint.write_json(str(folder / "verdict" / "p" / "verdict.json"),
                          {"compare": compare, "config": {"seed": seed}, "verdict": {
                              "draws": draws}})
    return str(folder)

  dirs = [replicate(tmp_path / "a", 0, "independent", "worse"),
          replicate(tmp_path / "b", 1, "balanced", "no measurable difference")]
  text = verdict._replicates(dirs, ["p", "not-run"])
  assert "| p, seed 0, independent draws | lur-ga |" in text
  assert "| p, seed 1, balanced draws | lur-ga |" in text
  rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
  assert rows["| LUR − GradDiff"].endswith("| better |")
  assert rows["| ladder: lur-ga − graddiff-ga"].endswith("| no |")
  assert "| -0.50 [-0.50, -0.50] better | better |" in rows["| LUR − GradDiff"]
  assert "not-run" not in text


def test_the_tofu_verdicts_rule_keeps_utility_before_forget_quality():
  import verdict_tofu  # pylint: disable=g-import-not-at-top
  rows = [{"lr": 1e-4, "forget_quality": 0.5, "model_utility": 0.70},
          {"lr": 3e-4, "forget_quality": 0.9, "model_utility": 0.50},  # forgets, but damages
          {"lr": 3e-5, "forget_quality": 0.1, "model_utility": 0.72}]
  assert verdict_tofu.choose(rows, [3e-5, 1e-4, 3e-4], 0.75) == (1e-4, True)
  assert verdict_tofu.choose(rows, [3e-5, 1e-4, 3e-4], 0.9) == (3e-5, False)  # none kept 90%
