"""The model cache: one layout keyed by fingerprint, atomic replacement, and
folders written by earlier lur_jax releases still read."""

import os

import jax
import numpy as np

from lur_jax.training import cache as cache_lib, checkpoint


def _variables(value):
  return {"params": {"w": np.full((3, 2), value, np.float32)}, "model_state": {}}


ABSTRACT = jax.eval_shape(lambda: _variables(0.0))


def test_a_model_is_found_by_its_fingerprint_only(tmp_path):
  cache = cache_lib.ModelCache(str(tmp_path))
  key = cache_lib.fingerprint({"seed": 0, "lr": 0.1})
  assert key == cache_lib.fingerprint({"lr": 0.1, "seed": 0}) and len(key) == 12
  assert cache.load("lur", key) is None
  cache.save("lur", key, _variables(1.0), {"row": {"UA": 1.0}})
  found = cache.load("lur", key, ABSTRACT)
  np.testing.assert_array_equal(found.variables["params"]["w"], 1.0)
  assert found.meta["row"] == {"UA": 1.0} and found.meta["fingerprint"] == key
  assert found.directory == os.path.join(str(tmp_path), "models", "lur")
  assert cache.load("lur", cache_lib.fingerprint({"seed": 1, "lr": 0.1})) is None


def test_a_new_fingerprint_replaces_the_folder_atomically(tmp_path):
  cache = cache_lib.ModelCache(str(tmp_path))
  cache.save("lur", "aaa", _variables(1.0), {})
  cache.save("lur", "bbb", _variables(2.0), {})
  assert cache.load("lur", "aaa") is None
  np.testing.assert_array_equal(cache.load("lur", "bbb", ABSTRACT).variables["params"]["w"], 2.0)
  assert sorted(os.listdir(tmp_path / "models")) == ["lur"]  # no .tmp left behind


def test_the_layout_of_earlier_releases_is_read(tmp_path):
  """Before the one layout, the original, retrain and the judge lived in
  ``models/<name>-<fingerprint>`` with no fingerprint in their meta."""
  legacy = tmp_path / "models" / "original-0123456789ab"
  checkpoint.save_model(str(legacy), _variables(3.0), {"seconds": 1.5, "steps": 4})
  said = []
  cache = cache_lib.ModelCache(str(tmp_path), log=said.append)
  found = cache.load("original", "0123456789ab", ABSTRACT)
  np.testing.assert_array_equal(found.variables["params"]["w"], 3.0)
  assert found.meta["steps"] == 4 and found.directory == str(legacy)
  assert "written by an earlier lur_jax" in said[0]
  assert cache.load("original", "ffffffffffff") is None


def test_changed_settings_are_named_and_the_earlier_model_is_kept(tmp_path):
  lines = []
  cache = cache_lib.ModelCache(str(tmp_path), log=lines.append)
  make = lambda value: lambda checkpoints: cache_lib.Trained(_variables(value), {})
  first = {"seed": 0, "settings": {"mode": "exact", "lr": 0.1}}
  second = {"seed": 0, "settings": {"mode": "hvp", "lr": 0.1}}
  cache.memoised("lur", first, make(1.0), ABSTRACT)
  assert not lines
  cache.memoised("lur", second, make(2.0), ABSTRACT)
  kept = os.path.join(str(tmp_path), "models", f"lur-{cache_lib.fingerprint(first)}")
  assert lines == [f"lur: the settings changed since {tmp_path}/models/lur was made (settings.mode:"
                   f" 'exact' -> 'hvp'); training anew, the earlier model moves to {kept}"]
  back, reused = cache.memoised("lur", first, make(3.0), ABSTRACT)  # the earlier settings again
  assert reused and back.directory == kept
  np.testing.assert_array_equal(back.variables["params"]["w"], 1.0)
  np.testing.assert_array_equal(cache.load("lur", cache_lib.fingerprint(second), ABSTRACT)
                                .variables["params"]["w"], 2.0)
