"""The verdict: vmapped sweeps, the draws, the statistics, the mechanism metric
and a tiny end-to-end run."""

import collections
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, SMOKE

from lur_jax import lookahead_params, study, verdict
from lur_jax.core import train
from lur_jax.study import config as config_lib, ensemble
from lur_jax.verdict import ddpm, space, stats, tune


@pytest.fixture(scope="module")
def exp():
  return study.prepare(config_lib.apply_overrides(config_lib.load(SMOKE), [
      "unlearn.epochs=1", "data.train_limit=300"])).only()


def _starts(exp, members):
  return ensemble.stack([{"params": exp.model.init(jax.random.key(int(s))), "model_state": {}}
                         for s in members.seeds])


@pytest.mark.parametrize("name,values", [
    pytest.param("graddiff", {"lr": [0.003, 0.05], "forget_weight": [0.1, 1.0]},
                 marks=pytest.mark.slow),
    ("lur", {"lr": [0.02, 0.004], "forget_weight": [0.5, 0.05], "inner_lr": [0.3, 0.02]}),
    pytest.param("l1_sparse", {"lr": [0.01, 0.1], "alpha": [1e-4, 1e-2]},
                 marks=pytest.mark.slow),
])
@pytest.mark.study
def test_a_sweep_member_matches_a_run_with_that_setting(exp, name, values):
  members = ensemble.random_members(exp, 2)
  starts = _starts(exp, members)
  swept = ensemble.unlearn(exp, name, starts, members, hparams=values, progress=False)
  for i in range(2):
    config = config_lib.apply_overrides(exp.config, [f"{name}.{k}={v[i]}"
                                                     for k, v in values.items()])
    alone = ensemble.unlearn(exp, name, starts, members, progress=False,
                             settings=config_lib.method_settings(config, name))
    for got, want in zip(jax.tree.leaves(ensemble.member(swept.state.params, i)),
                         jax.tree.leaves(ensemble.member(alone.state.params, i))):
      # float32 hyperparameters traced instead of constants: round-off only.
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {i}")


def test_sweep_values_must_be_one_finite_number_per_member(exp):
  members = ensemble.random_members(exp, 2)
  with pytest.raises(ValueError, match=r"hparams\['lr'\]: \(3,\) values; allowed: 2 finite"):
    ensemble.unlearn(exp, "ft", _starts(exp, members), members, hparams={"lr": [1, 2, 3]},
                     progress=False)
  with pytest.raises(ValueError, match=r"hparams\['lr'\]: \(2,\) values; allowed: 2 finite"):
    ensemble.unlearn(exp, "ft", _starts(exp, members), members, hparams={"lr": [0.1, -1]},
                     progress=False)
  with pytest.raises(ValueError, match="hparams: 'lrr' is not a numeric setting of ft; "
                     "allowed: batch_size, epochs, forget_batch_size, lr, momentum"):
    ensemble.unlearn(exp, "ft", _starts(exp, members), members, hparams={"lrr": [1, 2]},
                     progress=False)


def test_draws_are_seeded_and_inside_their_ranges():
  arms = space.arms()
  assert len(arms) == 7 + 2 * len(space.LADDER)
  assert {a.family for a in arms.values()} == {"baseline", "hybrid", "graddiff", "lur",
                                                "ablation"}
  s = arms["lur_k2-rl"].space
  first, again = space.draw(s, 50, 0, "x"), space.draw(s, 50, 0, "x")
  assert first == again and first != space.draw(s, 50, 0, "y")
  lr = np.array([d["lr"] for d in first])
  assert (lr >= 1e-3).all() and (lr <= 0.3).all() and lr.min() < 0.01 and lr.max() > 0.03
  assert {d["epochs"] for d in first} == set(space.EPOCHS)
  assert space.continuous_keys(s) == ["forget_weight", "inner_lr", "lr"]


def test_balanced_draws_give_each_combination_of_choices_an_equal_share():
  s = space.arms()["shs"].space  # sparsity × epochs: 12 combinations
  drawn = space.draw(s, 26, 0, "shs", balanced=True)
  assert drawn == space.draw(s, 26, 0, "shs", balanced=True)
  assert drawn != space.draw(s, 26, 0, "shs")
  shares = collections.Counter((d["sparsity"], d["epochs"]) for d in drawn)
  assert len(shares) == 12 and sorted(shares.values()) == [2] * 10 + [3] * 2
  lr, weight = (np.array([d[k] for d in drawn]) for k in ("lr", "forget_weight"))
  assert (lr >= 1e-3).all() and (lr <= 0.3).all() and len(set(lr)) == 26
  assert (weight >= 0.01).all() and (weight <= 3.0).all()
  assert [list(d) for d in drawn] == [sorted(s)] * 26
  epochs = [d["epochs"] for d in space.draw(space.arms()["ft"].space, 8, 0, "ft", True)]
  assert epochs != sorted(epochs) and sorted(epochs) == sorted(space.EPOCHS * 2)  # shuffled


def test_paired_intervals_and_verdicts():
  rng = np.random.default_rng(0)
  base = rng.normal(5, 2, 16)
  better = stats.paired(base - 1 + rng.normal(0, 0.1, 16), base)
  assert better["verdict"] == stats.BETTER and better["high"] < 0 < -better["low"]
  assert stats.paired(base + np.tile([1.0, -1.0], 8), base)["verdict"] == stats.SAME
  assert stats.paired(base + 2, base + rng.normal(0, 0.1, 16))["verdict"] == stats.WORSE
  i = stats.interval([1.0, 2.0, 3.0])  # t(0.975, 2) = 4.303, sd/√3 = 0.577
  np.testing.assert_allclose([i["low"], i["high"]], [2 - 2.4841, 2 + 2.4841], atol=1e-4)
  assert stats.interval([1.0, np.nan])["low"] is None


def test_lookahead_alignment_is_measured_after_the_virtual_steps():
  a, b = jnp.array([[2.0, 0.3], [0.3, 1.0]]), jnp.array([1.0, -2.0])
  retain = lambda p, batch: 0.5 * p @ a @ p
  unlearn = lambda p, batch: -0.5 * jnp.sum((p - b) ** 2)
  p = jnp.array([0.7, -0.4])
  found = train.lookahead_alignment(p, {}, {}, retain, unlearn, inner_lr=0.3, inner_steps=2)
  theta_k = lookahead_params(p, retain, {}, inner_lr=0.3, inner_steps=2)
  want = jnp.dot(-(theta_k - b), a @ p)
  np.testing.assert_allclose(found["lookahead_dot"], want, rtol=1e-6)
  at_theta = train.lookahead_alignment(p, {}, {}, retain, unlearn, inner_lr=0.0)
  np.testing.assert_allclose(at_theta["lookahead_cosine"], at_theta["grad_cosine"], rtol=1e-6)
  assert not np.isclose(found["lookahead_cosine"], found["grad_cosine"])


@pytest.mark.slow
def test_a_tiny_verdict_writes_its_tables(tmp_path, monkeypatch):
  config = config_lib.apply_overrides(config_lib.load(SMOKE), ["data.train_limit=200"])
  budget = {"settings": 2, "tune_seeds": 2, "final_seeds": 3, "mechanism_seeds": 2,
            "audit_models": 0, "arms": "graddiff-ga,lur-ga"}
  scored, member_metrics = [], tune.member_metrics  # which split scores how many members

  def recording(exp, variables, members, *args):
    scored.append((exp.config.eval.split, len(members.seeds)))
    return member_metrics(exp, variables, members, *args)
  monkeypatch.setattr(tune, "member_metrics", recording)
  results = verdict.run(config, str(tmp_path), budget, progress=False)
  # tuning (2 seeds; each drawn epoch count its own program) on validation, the final
  # seeds (3; the mechanism's 2) on test
  assert sorted(set(scored)) == [("test", 2), ("test", 3), ("val", 2)], scored
  assert {"verdict.json", "verdict.md", "verdict.png"} <= set(os.listdir(tmp_path))
  rows = json.load(open(tmp_path / "verdict.json"))["arms"]
  assert list(rows) == ["graddiff-ga", "lur-ga"]
  for row in rows.values():
    assert len(row["tuning"]["settings"]) == 2 and len(row["final"]["gap"]) == 3
  c = results["compare"]
  assert (c["lur"], c["graddiff"]) == ("lur-ga", "graddiff-ga")
  assert c["lur_minus_graddiff"]["n"] == 3 and "lur-ga" in c["ladder"]
  for name in ("lur-ga", "graddiff-ga"):  # one value per step of each run
    epochs = rows[name]["settings"]["epochs"]
    assert len(results["mechanism"][name]["lookahead_cosine"]) == epochs * 3  # 180 / 64
  said = []  # a rerun reuses the originals, the retrains' metrics and the finished arms,
  # also after tuned values were written into the config's method sections
  config = config_lib.apply_overrides(config, ["lur.lr=0.123", "graddiff.forget_weight=0.5",
                                               "ft.lr=0.01"])
  again = verdict.run(config, str(tmp_path), budget, progress=False, log=said.append)
  # The reused arm's numbers are read back (the reuse itself is what the lines below check).
  assert again["arms"]["lur-ga"]["final"]["gap"] == rows["lur-ga"]["final"]["gap"]
  assert again["reference"] == results["reference"]
  assert sum("reusing" in m and "models/verdict-" in m for m in said) == 2, said
  assert all(row["reused"] for row in again["arms"].values())


def _arm_key(exp, overrides, arm="lur-ga"):
  config = config_lib.apply_overrides(exp.config, overrides)
  return tune.arm_key(study.prepare(config).only(), space.arms()[arm])


def test_an_arm_is_determined_by_what_it_does_not_draw(exp):
  key = _arm_key(exp, [])
  assert _arm_key(exp, ["lur.lr=0.5", "lur.inner_lr=0.2", "lur.mode=hvp", "ft.lr=0.2"]) == key
  for changed in (["unlearn.batch_size=32"], ["data.train_limit=299"], ["forget.fraction=0.2"],
                  ["eval.split=val"]):
    assert _arm_key(exp, changed) != key, changed
  assert _arm_key(exp, [], "lur-rl") != key


def test_the_ddpm_gap_is_the_mean_of_three_distances_to_the_retrain():
  reference = np.array([[100.0, 98.0, 4.0], [96.0, 100.0, 5.0]])  # UA, kept accuracy, FD
  values = np.array([[90.0, 99.0, 4.4], [96.0, 94.0, 4.0]])
  np.testing.assert_allclose(ddpm.gap(values, reference), [(10 + 1 + 10) / 3, (0 + 6 + 20) / 3])
  np.testing.assert_allclose(ddpm.fd_ratio(values, reference)["FD_vs_retrain"], [1.1, 0.8])
  assert np.isnan(ddpm.gap(np.full((1, 3), np.nan), reference[:1])).all()


@pytest.mark.slow  # ~1 min of U-Net compiles; keeps .ci/run under its 15 minutes
def test_a_tiny_ddpm_verdict_scores_samples_against_each_seeds_retrain(tmp_path):
  config = config_lib.load(os.path.join(ROOT, "configs", "ddpm_digits_smoke.py"))
  budget = {"settings": 1, "tune_seeds": 2, "final_seeds": 2, "mechanism_seeds": 0,
            "audit_models": 16, "arms": "graddiff-rl,lur-rl"}
  results = verdict.run(config, str(tmp_path), budget, progress=False)
  assert results["metrics"] == ("UA", "kept_accuracy", "FD")
  assert results["reference"]["final"]["FD"]["value"] > 0
  for row in results["arms"].values():
    f = row["final"]
    values = np.array(f["metrics"])
    assert values.shape == (2, 3) and np.isfinite(values).all() and np.isfinite(f["gap"]).all()
    assert f["FD_vs_retrain"]["n"] == 2
  assert "| FD_vs_retrain |" in open(tmp_path / "verdict.md").read()
  assert results["compare"]["lur_minus_graddiff"]["n"] == 2
  assert "audit" not in results  # class forgetting: no audit
  assert not os.path.exists(tmp_path / "samples")  # no grid per tuned model


@pytest.mark.parametrize("budget,match", [
    ({"settings": 0}, r"verdict.settings=0; allowed: an int >= 1"),
    ({"final_seeds": 1}, r"verdict.final_seeds=1; allowed: an int >= 2"),
    ({"tune_seeds": 1}, r"verdict.tune_seeds=1; allowed: an int >= 2"),
    ({"arms": "lur-ga"}, r"allowed: a list with a graddiff arm"),
    ({"arms": "graddiff-ga,lur-xx"}, r"unknown arm 'lur-xx'; allowed: ft, ga"),
    ({"seeds": 3}, r"verdict.seeds: unknown key"),
    ({"mechanism_seeds": 1}, r"verdict.mechanism_seeds=1; allowed: 0 \(none\) or an int >= 2"),
    ({"audit_models": 9}, r"verdict.audit_models=9; allowed: 0 \(no audit\) or an even int"),
    ({"draws": "even"}, r"verdict.draws='even'; allowed: independent, balanced"),
    ({"sets": ["model.name=resnet18"]}, r"model.name='resnet18' keeps BatchNorm statistics"),
])
def test_bad_budgets_raise_one_line_errors(tmp_path, budget, match):
  config = config_lib.apply_overrides(config_lib.load(SMOKE), budget.pop("sets", []))
  with pytest.raises(ValueError, match=match):
    verdict.run(config, str(tmp_path / "out"), budget, progress=False)
  assert not (tmp_path / "out").exists()


def test_graddiff_takes_either_forget_objective():
  config = config_lib.apply_overrides(config_lib.load(SMOKE),
                                      ["graddiff.forget_objective=xx", "methods=graddiff"])
  with pytest.raises(ValueError, match="graddiff.forget_objective='xx'; allowed: ga, rl"):
    study.prepare(config).only()
