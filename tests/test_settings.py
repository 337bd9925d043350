"""A method's settings: resolved once, read-only, varied only by replace()."""

import pickle

import pytest
from conftest import SMOKE

import lur_jax
from lur_jax.study import config as config_lib


def test_settings_read_as_attributes_and_keys_and_refuse_edits():
  s = lur_jax.Settings({"lr": 0.1, "epochs": 2}, name="ft")
  assert (s.lr, s["epochs"], s.get("alpha", 3), s.name) == (0.1, 2, 3, "ft")
  assert dict(s) == {"lr": 0.1, "epochs": 2, "name": "ft"}
  with pytest.raises(AttributeError, match="read-only .setting 'lr'.; allowed: settings.replace"):
    s.lr = 0.2
  with pytest.raises(AttributeError, match="no 'alpha'; they have: lr, epochs, name"):
    _ = s.alpha
  varied = s.replace(lr=0.2)
  assert (varied.lr, s.lr, varied.epochs) == (0.2, 0.1, 2)
  assert pickle.loads(pickle.dumps(varied)) == varied


def test_a_study_resolves_every_methods_settings_once_from_its_config():
  config = config_lib.apply_overrides(config_lib.load(SMOKE), ["lur.inner_lr=0.25", "lur.remat=True",
                                                               "unlearn.momentum=0.5"])
  exp = lur_jax.prepare(config).only()
  assert exp.settings["lur"].inner_lr == 0.25
  assert exp.settings["lur_snip"].remat is True  # lur_snip inherits lur's section
  assert exp.settings["ga"].momentum == 0.5 and exp.settings["ga"].name == "ga"
  assert exp.settings["retrain"].lr == config.train.lr  # retrain: the train recipe
  assert set(exp.method_names) <= set(exp.settings)
