"""A smoke variant of fashion_mnist.py for the tests: 2,000 training and 1,000
test images, one epoch each.

    lur-jax run configs/fashion_mnist_smoke.py --out /tmp/smoke-fashion
"""

import fashion_mnist


def get_config():
  c = fashion_mnist.get_config()
  c.data.update({"train_limit": 2000, "test_limit": 1000})
  c.train.epochs = 1
  c.unlearn.epochs = 1
  for name in ("ft", "ga", "rl", "graddiff", "l1_sparse", "salun", "shs", "lur"):
    c[name].epochs = None
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c
