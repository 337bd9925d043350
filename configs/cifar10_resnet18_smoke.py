"""A CPU smoke variant of cifar10_resnet18.py: a narrow ResNet-18 and one epoch;
the tests run it on `tfds.testing.mock_data`.

    lur-jax run configs/cifar10_resnet18_smoke.py --out /tmp/smoke-cifar
"""

import cifar10_resnet18


def shrink(c):
  """Makes any ResNet-18 config a seconds-long CPU run."""
  c.model.width = 4
  c.train.update({"epochs": 1, "batch_size": 32})
  c.unlearn.update({"epochs": 1, "batch_size": 32, "forget_batch_size": 16})
  for name in ("ft", "ga", "rl", "graddiff", "l1_sparse", "salun", "shs", "lur"):
    c[name].epochs = 1
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c


def get_config():
  return shrink(cifar10_resnet18.get_config())
