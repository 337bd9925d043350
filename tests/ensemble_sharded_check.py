"""Run with 8 (simulated) devices: an ensemble of 8 members sharded over the
mesh, one member per device, against the same ensemble on one device.
Prints one JSON line per method: the largest difference relative to the
largest entry. Used by tests/test_ensemble.py."""

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_ensemble  # pylint: disable=g-import-not-at-top,wrong-import-position

from lur_jax import study  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib, ensemble, runner  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  base = config_lib.apply_overrides(config_lib.load(test_ensemble.SMOKE), ["unlearn.epochs=1"])
  results = {}
  for devices in (1, 8):
    exp = study.prepare(config_lib.apply_overrides(base, [f"devices={devices}"])).only()
    members = test_ensemble.draw_members(exp, 8)
    starts = ensemble.stack([runner.initial_variables(exp.model, exp.mesh, seed=i + 1)
                             for i in range(8)])
    for name in ("lur", "salun"):
      out = ensemble.unlearn(exp, name, starts, members, progress=False)
      results.setdefault(name, {})[devices] = out.state.params
  for name, by_devices in results.items():
    worst = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(
        jax.tree.leaves(by_devices[8]), jax.tree.leaves(by_devices[1])))
    print(json.dumps({"method": name, "devices": jax.device_count(), "relative": worst}))


if __name__ == "__main__":
  main()
