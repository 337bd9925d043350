"""The digits smoke study with sharded parameters against one device; run by test_sharding.py.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/fsdp_study_check.py OUT \
        [MESH ...] [--config NAME] [--set key=value ...]

MESH is ``data,fsdp,tensor`` (default ``1,8,1``); NAME a config of ``configs/`` (default
``digits_smoke``). Runs the study once on 1 device and once per mesh on 8, every method of
the config (the sharded runs start from the 1-device run's original model, and pretrained one
if any, so that each method's difference is that of its own path; retrain's is training's), and prints one JSON line per (mesh, method): the
largest relative difference of any parameter to the 1-device run (each leaf's difference over
its largest entry), ``outliers``: how many entries differ by more than 1e-5 of that, ``examples``: the largest
difference of UA, RA, TA and MIA counted in examples of the set each is measured on (a
percentage point on n examples is n / 100 of them), and ``metrics``: the largest absolute
difference of the language tasks' numbers (NLLs, ROUGE, truth ratio, ...).
"""

import json
import os
import shutil
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lur_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.training import cache, checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position

# The metrics compared: classification's (percent of a set) and the language tasks'.
SETS = {"UA": "forget", "MIA": "forget", "RA": "retain", "TA": "test"}
KEYS = ("forget_nll", "retain_nll", "test_nll", "model_utility", "forget_rouge",
        "forget_truth_ratio", "mia_min_k")


def _run(out, sets, name):
  cfg = config_lib.apply_overrides(config_lib.load(os.path.join(ROOT, "configs", f"{name}.py")),
                                   sets)
  results = lur_jax.run(cfg, out, progress=False, log=lambda msg: None)
  scope = ""
  if "methods" not in results:  # a study of variants (TOFU's splits): the first one
    scope, results = next(iter(results.items()))
  models = cache.ModelCache(out, scope=scope)
  params = {name: checkpoint.restore_model(models.model_dir(name), None)[0]
            for name in results["methods"]}
  return results, params


def main(argv):
  out, rest = argv[0], argv[1:]
  options = ("--set", "--config")
  sets = [rest[i + 1] for i, a in enumerate(rest) if a == "--set"]
  name = next((rest[i + 1] for i, a in enumerate(rest) if a == "--config"), "digits_smoke")
  meshes = [a for i, a in enumerate(rest)
            if a not in options and (i == 0 or rest[i - 1] not in options)]
  one, one_params = _run(os.path.join(out, "one"), [*sets, "devices=1"], name)
  for spec in meshes or ["1,8,1"]:
    data, fsdp, tensor = (int(v) for v in spec.split(","))
    here = os.path.join(out, spec.replace(",", "-"))
    for start in ("original", "pretrain"):  # one start: each method's comparison is its own
      if os.path.isdir(os.path.join(out, "one", "models", start)):  # path (retrain: training)
        shutil.copytree(os.path.join(out, "one", "models", start),
                        os.path.join(here, "models", start))
    got, got_params = _run(here, [
        *sets, "devices=8", f"mesh.data={data}", f"mesh.fsdp={fsdp}", f"mesh.tensor={tensor}"],
        name)
    for method, row in one["methods"].items():
      pairs = list(zip(jax.tree.leaves(got_params[method]), jax.tree.leaves(one_params[method])))
      apart = [np.abs(a - b) / max(np.max(np.abs(b)), 1e-12) for a, b in pairs]
      worst = max(float(np.max(r)) for r in apart)
      outliers = sum(int((r > 1e-5).sum()) for r in apart)
      other = got["methods"][method]
      examples = max((abs(other[k] - row[k]) * one["data"][s] / 100 for k, s in SETS.items()
                      if k in row), default=0.0)
      metrics = max((abs(other[k] - row[k]) for k in KEYS if k in row), default=0.0)
      print(json.dumps({"mesh": spec, "method": method, "relative": worst,
                        "outliers": outliers, "examples": examples,
                        "metrics": metrics, "mesh_recorded": got.get("mesh")}), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
