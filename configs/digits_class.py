"""Digits, class-wise forgetting of class 0 (variant of digits.py).

    lur-jax run configs/digits_class.py --out runs/digits_class

The same as `configs/digits.py --set forget.kind=class`: the per-method
settings for class-wise forgetting live in digits.py's `settings_for`.
"""

import digits

from lur_jax.study import config as config_lib


def get_config():
  c = digits.get_config()
  c.forget.kind = "class"
  c.forget.classes = "0"
  return config_lib.for_kind(c)
