"""The ``params_checksum`` of every method for the reference configs (seed 0).

A refactoring that must not change behaviour is checked by running this
before and after it and comparing the two files: every checksum identical.

    python benchmarks/checksums.py benchmarks/results/checksums.json [CONFIG ...]

Configs: digits, digits_class, fashion_mnist_smoke, cifar10_resnet18_smoke
(on ``tfds.testing.mock_data``), ddpm_digits_smoke, lm_smoke and tofu_smoke
(one entry per forget split, ``tofu_smoke/<split>``). Also records each
method's numeric results (seconds left out) under ``<config>/rows``.

Checksums are bit-level: XLA:CPU compiles for the host's instruction set, so
two machines of the same kind with other processors can give other checksums
for the same commit. Compare files made on one machine.
"""

import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lur_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIGS = ["digits", "digits_class", "fashion_mnist_smoke", "cifar10_resnet18_smoke",
           "ddpm_digits_smoke", "lm_smoke", "tofu_smoke"]


def _run(name: str) -> dict:
  cfg = config_lib.load(os.path.join(ROOT, "configs", f"{name}.py"))
  cfg.seed = 0
  with tempfile.TemporaryDirectory() as out:
    if name.startswith("cifar"):
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        return lur_jax.run(cfg, out, progress=False, log=lambda msg: None)
    return lur_jax.run(cfg, out, progress=False, log=lambda msg: None)


def _studies(name: str, results: dict) -> dict:
  """``{label: results}``: one study, or one per variant (``name/scope``)."""
  if "methods" in results:
    return {name: results}
  return {f"{name}/{scope}": r for scope, r in results.items()}


def main(path: str, names: list[str]) -> None:
  record = {}
  for name in names:
    for label, results in _studies(name, _run(name)).items():
      record[label] = {m: row["params_checksum"] for m, row in results["methods"].items()}
      record[label + "/rows"] = {
          m: {k: v for k, v in row.items() if isinstance(v, (int, float)) and "seconds" not in k}
          for m, row in results["methods"].items()}
      print(label, json.dumps(record[label]), flush=True)
  lur_jax.training.checkpoint.write_json(path, record)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else
       os.path.join(ROOT, "benchmarks", "results", "checksums.json"),
       sys.argv[2:] or CONFIGS)
