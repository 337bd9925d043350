"""Settings follow the forget kind: one config per dataset holds the settings
for each kind, a run uses those of its kind, and a kind without any warns."""

import os

import pytest
from conftest import ROOT

from lur_jax import study
from lur_jax.core import methods
from lur_jax.study import config as config_lib


def _load(name, sets=()):
  return config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, "configs", name)), sets)


def _settings(config):
  return {name: dict(config_lib.method_settings(config, name))
          for name in methods.parse_methods(config.methods)}


@pytest.mark.parametrize("base, variant", [("digits.py", "digits_class.py"),
                                           ("fashion_mnist.py", "fashion_mnist_class.py"),
                                           ("cifar10_resnet18.py", "cifar10_resnet18_class.py")])
def test_a_forget_kind_on_the_command_line_brings_its_settings(base, variant):
  switched, written = _load(base, ["forget.kind=class"]), _load(variant)
  assert _settings(switched) == _settings(written)
  assert switched.train.to_dict() == written.train.to_dict()
  assert switched.data.to_dict() == written.data.to_dict()
  back = _load(variant, ["forget.kind=random"])
  assert _settings(back) == _settings(_load(base))


def test_the_class_settings_are_the_tuned_ones_and_overrides_still_win():
  config = _load("digits.py", ["forget.kind=class", "lur.lr=0.5"])
  lur = config_lib.method_settings(config, "lur")
  assert (lur.forget_objective, lur.forget_weight, lur.epochs, lur.lr) == ("rl", 0.0348, 10, 0.5)
  assert (lur.mode, lur.inner_steps, lur.lookahead) == ("hvp", 4, "retain")  # the verdict's arm
  assert config_lib.kind_warning(config) is None
  fashion = _load("fashion_mnist.py", ["forget.kind=class"])
  assert (fashion.data.train_limit, fashion.train.epochs) == (10000, 15)


def test_a_kind_without_settings_warns_in_one_line(tmp_path):
  config = _load("digits_smoke.py", ["forget.kind=indices", "forget.indices=1,2,3",
                                     "methods=ft"])
  lines = []
  study.run(config, str(tmp_path), progress=False, log=lines.append)
  assert lines[0] == ("warning: no settings were tuned for forget.kind='indices' in this "
                      "config (tuned: random, class); the methods run with those for 'random'")
  edited = _load("digits.py")
  edited.forget.kind = "class"  # changed in Python, after loading: the settings did not follow
  assert "lur_jax.study.config.for_kind(config)" in config_lib.kind_warning(edited)
  assert config_lib.method_settings(config_lib.for_kind(edited), "lur").forget_objective == "rl"
