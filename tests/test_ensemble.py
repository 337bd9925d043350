"""Vmapped ensembles: each member ends where the same member run alone ends
(the study's own path, :func:`lur_jax.study.runner.run_method`)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT, SMOKE

from lur_jax import study
from lur_jax.study import config as config_lib, ensemble, runner

pytestmark = pytest.mark.study  # end to end: the study tier


@pytest.fixture(scope="module")
def exp():
  config = config_lib.apply_overrides(config_lib.load(SMOKE), [
      "unlearn.epochs=1", "salun.gamma=0.3", "shs.sparsity=0.9"])
  return study.prepare(config).only()


def draw_members(exp, m=2):
  return ensemble.random_members(exp, m)


# Methods whose members are bit-identical to the member run alone, and those that differ by
# float round-off (measured: at most 2.6e-7 of the largest entry; the test allows 1e-6).
BIT_IDENTICAL = [("graddiff", []), ("lur", ["lur.mode=hvp"])]
BIT_IDENTICAL_SLOW = [("retrain", []), ("ft", []), ("ga", []), ("rl", []), ("l1_sparse", []),
                      ("shs", []), ("lur", ["lur.mode=first_order"])]
ROUND_OFF = [("lur", ["lur.mode=exact"])]
ROUND_OFF_SLOW = [("salun", []), ("lur_snip", [])]
CASES = ([(*c, True) for c in BIT_IDENTICAL] + [(*c, False) for c in ROUND_OFF]
         + [pytest.param(*c, True, marks=pytest.mark.slow) for c in BIT_IDENTICAL_SLOW]
         + [pytest.param(*c, False, marks=pytest.mark.slow) for c in ROUND_OFF_SLOW])


@pytest.mark.parametrize("name, sets, bit_identical", CASES,
                         ids=lambda v: ",".join(v) if isinstance(v, list) else str(v))
def test_each_member_matches_the_member_run_alone(exp, name, sets, bit_identical):
  settings = config_lib.method_settings(config_lib.apply_overrides(exp.config, sets), name)
  members = draw_members(exp)
  starts = [runner.initial_variables(exp.model, exp.mesh, seed=i + 1)
            for i in range(len(members.seeds))]
  together = ensemble.unlearn(exp, name, ensemble.stack(starts), members, settings=settings,
                              progress=False)
  for i in range(len(members.seeds)):
    retain, forget = members.retain[i], members.forget[i]
    alone = runner.run_method(exp, runner.recipe(name, settings, retain, forget), starts[i],
                              exp.splits.train, retain, forget, seed=int(members.seeds[i]),
                              desc=f"member{i}", progress=False)
    for got, want in zip(jax.tree.leaves(ensemble.member(together.state.params, i)),
                         jax.tree.leaves(alone.state.params)):
      if bit_identical:
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {sets} member {i}")
      else:
        relative = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        assert relative <= 1e-6, (name, sets, i, relative)
  assert (together.diverged_at == -1).all()
  assert together.history["loss"].shape == (together.steps, len(members.seeds))


def test_an_ensemble_needs_two_members(exp):
  members = draw_members(exp, 1)
  with pytest.raises(ValueError, match="an ensemble of 1 models; allowed: at least 2"):
    ensemble.fit(None, None, exp.splits.train.x, exp.splits.train.y, members, mesh=exp.mesh,
                 epochs=1, batch_size=8, forget_batch_size=8, iterate="retain")


@pytest.mark.slow
def test_eight_devices_give_the_same_members_as_one():
  """The model axis sharded over 8 simulated devices, one member each."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "PYTHONPATH": ROOT}
  proc = subprocess.run([sys.executable, os.path.join("tests", "ensemble_sharded_check.py")],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in proc.stdout.splitlines()]
  assert {r["method"] for r in rows} == {"lur", "salun"}
  for row in rows:
    assert row["devices"] == 8 and row["relative"] <= 1e-6, row


def test_a_member_that_diverged_before_a_checkpoint_stays_diverged_after_resume(tmp_path):
  """Member 0's metrics turn NaN at step 2; the checkpoint at step 6 is resumed from."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from lur_jax.core import train  # pylint: disable=g-import-not-at-top
  from lur_jax.training import checkpoint  # pylint: disable=g-import-not-at-top

  def step(state, retain_batch, forget_batch):
    bad = (state.step >= 2) & (state.params["w"] == 0)
    return state._replace(step=state.step + 1), {"loss": jnp.where(bad, jnp.nan, 1.0)}

  states = ensemble.stack([train.TrainState({"w": np.float32(w)}, (), np.int32(0),
                                            jax.random.key_data(jax.random.key(0)), {})
                           for w in (0.0, 1.0)])
  states = states._replace(rng=jax.random.wrap_key_data(states.rng))
  members = ensemble.Members(np.array([1, 2]), np.tile(np.arange(8), (2, 1)),
                             np.zeros((2, 0), np.int64))
  x, y = np.zeros((8, 2), np.float32), np.zeros(8, np.int32)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  results = []
  for _ in range(2):  # the second run resumes from the first's last checkpoint (step 6)
    saver = checkpoint.RunCheckpoints(str(tmp_path / "ckpt"), 1)
    results.append(ensemble.fit(step, states, x, y, members, mesh=mesh, epochs=8, batch_size=8,
                                forget_batch_size=0, iterate="retain", progress=False,
                                checkpoints=saver, every=3, log=lambda msg: None))
    saver.close()
  assert results[0].diverged_at.tolist() == [2, -1]
  assert results[1].diverged_at.tolist() == [2, -1]
  assert results[1].history["loss"].shape == (8, 2)
