"""The audit on real digits models: the attacks can fail (the original models
are found out, a second ensemble of retrains is not), reruns reuse the
ensembles, and bad settings are refused before anything is written."""

import json
import os

import jax
import numpy as np
import pytest
from conftest import ROOT

from lur_jax import cli, study
from lur_jax.audit import assignment, forgetting_score, study as audit_lib
from lur_jax.study import config as config_lib, ensemble

DIGITS = os.path.join(ROOT, "configs", "digits.py")
# 300 training examples: the MLP memorises them (TA 94 against RA 100), so
# the original models are detectable at M = 8 (U-LiRA 65% [58, 71]); on all
# 1295 they generalise too well for M = 8 (53% [50, 56]; 56% [54, 58] at M = 32).
SMALL = ["data.train_limit=300", "audit.models=8", "audit.methods=ga", "audit.bootstrap=300"]


def _config(sets):
  return config_lib.apply_overrides(config_lib.load(DIGITS), sets)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("audit"))
  lines = []
  results = audit_lib.run(_config(SMALL), out, progress=False, log=lines.append)
  return out, results, lines


def _identical_level(models, examples, draws=5):
  """The NeurIPS forgetting quality of two identical Gaussians at this M."""
  rng = np.random.default_rng(0)
  return np.mean([forgetting_score.forgetting_quality(rng.normal(size=(models, examples)),
                                                      rng.normal(size=(models, examples)))
                  for _ in range(draws)])


@pytest.mark.study
def test_the_original_models_are_found_out_and_retrains_are_not(audited):
  _, results, _ = audited
  rows = results["rows"]
  assert list(rows) == ["original", "retrain", "ga"]
  original, retrain = rows["original"]["ulira"], rows["retrain"]["ulira"]
  assert original["balanced_accuracy"]["low"] > 0.55, original["balanced_accuracy"]
  ba = retrain["balanced_accuracy"]
  assert ba["low"] <= 0.5 <= ba["high"], ba
  assert original["auc"]["low"] > 0.6
  assert len(original["per_example_accuracy"]) == results["audit"]["examples"] == 60


@pytest.mark.study
def test_the_forgetting_score_of_retrains_reaches_the_identical_level(audited):
  _, results, _ = audited
  rows = results["rows"]
  level = _identical_level(8, results["audit"]["forget_size"])
  retrain, original = rows["retrain"]["neurips"]["quality"], rows["original"]["neurips"]["quality"]
  assert retrain["low"] <= level + 0.02 and retrain["high"] >= level - 0.02, (retrain, level)
  assert original["high"] < retrain["low"], (original, retrain)
  assert rows["retrain"]["neurips"]["utility"] == pytest.approx(1.0, abs=0.03)


@pytest.mark.study
def test_the_confidence_column_shows_what_retraining_never_saw(audited):
  _, results, _ = audited
  retrain, original = (results["rows"][k]["confidence"] for k in ("retrain", "original"))
  # A retrain never trained on the examples its run forgot: they get lower confidence.
  # The originals trained on every example, so the split is by chance there.
  gap = retrain["kept"] - retrain["forgotten"]
  assert gap > 0.5, retrain  # 1.05 here; the originals 0.07
  assert abs(original["kept"] - original["forgotten"]) < gap / 4, (original, retrain)


@pytest.mark.study
def test_summary_metrics_have_intervals_and_files_are_written(audited):
  out, results, _ = audited
  for row in results["rows"].values():
    for key in ("UA", "RA", "TA", "MIA", "avg_gap"):
      assert row[key]["low"] <= row[key]["value"] <= row[key]["high"], (key, row[key])
  assert results["rows"]["original"]["UA"]["value"] == 0.0
  assert set(os.listdir(out)) >= {"audit.json", "audit.md", "audit.png"}
  with open(os.path.join(out, "audit.json")) as f:
    written = json.load(f)
  assert written["versions"]["jax"] and written["device"].startswith("cpu")
  assert written["audit"]["models"] == 8 and written["audit"]["pool"] == 60
  with open(os.path.join(out, "audit.md")) as f:
    assert f.read().count("\n| ") == 3  # three rows after the header


@pytest.mark.study
def test_a_rerun_reuses_every_ensemble_and_adds_only_new_methods(audited):
  out, results, _ = audited
  lines = []
  again = audit_lib.run(_config(SMALL[:-2] + ["audit.methods=ga,ft", "audit.bootstrap=300"]),
                        out, progress=False, log=lines.append)
  reused = [line for line in lines if "reusing" in line]
  assert len(reused) == 4, lines  # original, both retrain ensembles, ga
  assert any(line.startswith("audit: ft: 16 models") for line in lines), lines
  for name in ("original", "retrain", "ga"):  # read back, not recomputed: the same numbers
    assert again["rows"][name]["ulira"] == results["rows"][name]["ulira"]


@pytest.mark.study
def test_a_method_whose_outputs_overflow_is_reported_not_scored(audited, monkeypatch):
  out, _, _ = audited
  real = audit_lib.scores.outputs

  def overflowing(apply, variables, *args, **kw):
    result = real(apply, variables, *args, **kw)
    if overflowing.calls == 3:  # the reference, original, retrain-again, then ga
      raise FloatingPointError("non-finite model outputs")
    overflowing.calls += 1
    return result
  overflowing.calls = 0
  monkeypatch.setattr(audit_lib.scores, "outputs", overflowing)
  lines = []
  results = audit_lib.run(_config(SMALL), out, progress=False, log=lines.append)
  assert results["rows"]["ga"] == {**{k: results["rows"]["ga"][k] for k in
                                      ("seconds", "compile_seconds", "steps")},
                                   "diverged": "some"}
  assert "ulira" in results["rows"]["retrain"]
  assert "audit: ga: some models diverged; not scored" in lines


def test_the_assignment_puts_every_pool_example_in_half_of_the_shadow_runs():
  forget = np.arange(10, 40)
  p = assignment.make(0, 200, forget, models=8, examples=0)
  assert len(p.pool) == 60 and set(forget) <= set(p.pool)
  assert (p.in_forget.sum(0) == 4).all()  # 8 shadow runs, each example in 4
  assert p.forget.shape == (16, 30) and p.retain.shape == (16, 170)
  assert (p.forget[8:] == forget).all()
  for f, r in zip(p.forget, p.retain):
    assert len(np.union1d(f, r)) == 200
  m = p.members(0, "ga")
  assert len(set(m.seeds)) == 16 and not set(m.seeds) & set(p.members(0, "ft").seeds)


@pytest.mark.study
def test_chunks_give_the_same_members_as_one_vmapped_call():
  exp = study.prepare(config_lib.apply_overrides(config_lib.load(
      os.path.join(ROOT, "configs", "digits_smoke.py")), ["unlearn.epochs=1"])).only()
  members = ensemble.random_members(exp, 4)
  starts = ensemble.stack([{"params": exp.model.init(jax.random.key(i)),
                            "model_state": {}} for i in range(4)])
  whole = ensemble.unlearn(exp, "graddiff", starts, members, progress=False)
  for chunk in (1, 2):  # one member per call runs the step without vmap
    parts = ensemble.unlearn(exp, "graddiff", starts, members, progress=False, chunk=chunk)
    for a, b in zip(*(jax.tree.leaves(r.state.params) for r in (whole, parts))):
      np.testing.assert_array_equal(a, b)  # measured: bit-identical
  with pytest.raises(ValueError, match="chunk=3 with 4 models"):
    ensemble.unlearn(exp, "graddiff", starts, members, progress=False, chunk=3)


@pytest.mark.parametrize("sets, match", [
    (["audit.models=1"], "audit.models=1; allowed: an even int >= 8"),
    (["audit.models=9"], "audit.models=9; allowed: an even int >= 8"),
    (["audit.examples=100000"], "audit.examples=100000; allowed: 0 (all) or 1..260"),
    (["audit.methods=ga,unlearn_all"], "audit.methods: unknown method 'unlearn_all'"),
    (["audit.methods=retrain"], "audit.methods='retrain'; allowed: at least one method"),
    (["audit.chunk=3"], "audit.chunk=3; allowed: 0 (all models at once) or a divisor"),
    (["audit.bootstrap=0"], "audit.bootstrap=0; allowed: an int >= 1"),
    (["forget.kind=class"], "forget.kind='class'; allowed for an audit: random"),
    (["forget.fraction=0.7"], "forget.fraction=0.7; allowed for an audit: (0, 0.5]"),
    (["forget.fraction=0.5"], "forget.fraction=0.5 forgets 648 of 1295 examples; allowed for "
     "an audit: at most 647"),
    (["model.name=resnet18"], "model.name='resnet18' keeps BatchNorm statistics"),
    (["ga.lr=-1"], "ga.lr=-1.0; allowed: a number > 0"),
])
def test_bad_audit_settings_exit_2_and_write_nothing(tmp_path, capsys, sets, match):
  out = tmp_path / "out"
  args = ["audit", DIGITS, "--out", str(out), "--no-progress"]
  for s in sets:
    args += ["--set", s]
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and match in err, err
  assert not out.exists()


@pytest.mark.study
def test_an_interrupted_ensemble_resumes_bit_identically(tmp_path):
  """A finished run leaves its last checkpoint (step 20 of 24) behind; a second
  run from it ends exactly where the uninterrupted one did."""
  from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  exp = study.prepare(config_lib.apply_overrides(config_lib.load(
      os.path.join(ROOT, "configs", "digits_smoke.py")), ["unlearn.epochs=2"])).only()
  members = ensemble.random_members(exp, 2)
  starts = ensemble.stack([{"params": exp.model.init(jax.random.key(i)), "model_state": {}}
                           for i in range(2)])
  lines, results = [], []
  for _ in range(2):
    saver = checkpoint.RunCheckpoints(str(tmp_path / "ckpt"), 2)
    results.append(ensemble.unlearn(exp, "lur", starts, members, progress=False,
                                    checkpoints=saver, every=5, log=lines.append))
    saver.close()
  whole, resumed = results
  position = (whole.steps - 1) // 5 * 5
  assert lines == [f"lur: resuming at step {position} of {whole.steps}"]
  # The history comes back with the checkpoint: the resumed run reports every step.
  assert resumed.history["loss"].shape == (whole.steps, 2)
  np.testing.assert_array_equal(resumed.history["loss"], whole.history["loss"])
  for a, b in zip(jax.tree.leaves(whole.state.params), jax.tree.leaves(resumed.state.params)):
    np.testing.assert_array_equal(a, b)
