"""The plain install: every module imports on its own, and without the extras' packages the
functional API and the classification study work while an LM task names the extra."""

import json
import os
import subprocess
import sys

import pytest

from lur_jax import extras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a fresh interpreter: each module of lur_jax imported first (its own import order, no
# cycle), then, with the extras' packages blocked, what the plain install must do.
SCRIPT = r"""
import importlib, importlib.abc, json, pkgutil, sys
import lur_jax
names = sorted(m.name for m in pkgutil.walk_packages(lur_jax.__path__, "lur_jax.")
               if not m.name.endswith("__main__"))  # __main__ runs the command line
failed = {}
for name in names:
  for loaded in [m for m in sys.modules if m.startswith("lur_jax.")]:
    del sys.modules[loaded]
  try:
    importlib.import_module(name)
  except Exception as e:
    failed[name] = f"{type(e).__name__}: {e}"
for loaded in [m for m in sys.modules if m.split(".")[0] in ("lur_jax",) + BLOCKED]:
  del sys.modules[loaded]

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(name)
sys.meta_path.insert(0, Block())
from lur_jax import study
from lur_jax.study import config
exp = study.prepare(config.load("configs/digits_smoke.py")).only()
try:
  study.prepare(config.load("configs/tofu_smoke.py"))
  message = None
except ValueError as e:
  message = str(e)
print(json.dumps({"modules": len(names), "failed": failed, "message": message,
                  "digits": exp.method_names}))
"""


@pytest.fixture(scope="module")
def plain():
  blocked = tuple(sorted(extras.PACKAGES))
  proc = subprocess.run([sys.executable, "-c", f"BLOCKED = {blocked!r}\n" + SCRIPT], cwd=ROOT,
                        capture_output=True, text=True, timeout=600, check=False,
                        env={**os.environ, "PYTHONPATH": ROOT})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.splitlines()[-1])


def test_every_module_imports_first(plain):
  assert plain["modules"] > 60
  assert plain["failed"] == {}


def test_without_the_extras_classification_prepares_and_lm_names_its_extra(plain):
  assert plain["digits"]
  assert plain["message"] == ("a language-model task's tokenizer needs tokenizers, which is not "
                              "installed; allowed: pip install 'lur_jax[lm]'")


def test_require_names_the_package_and_extra(monkeypatch):
  for name in ("safetensors", "safetensors.numpy"):  # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, name, None)
  with pytest.raises(ValueError, match=r"^save_pretrained needs safetensors, which is not "
                     r"installed; allowed: pip install 'lur_jax\[lm\]'$"):
    extras.require("safetensors.numpy", "save_pretrained")
  assert extras.require("json", "x") is json
