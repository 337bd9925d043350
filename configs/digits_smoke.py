"""A seconds-long smoke variant of digits.py for the tests.

    lur-jax run configs/digits_smoke.py --out /tmp/smoke
"""

import digits


def get_config():
  c = digits.get_config()
  c.train.epochs = 3
  c.unlearn.epochs = 1
  return c
