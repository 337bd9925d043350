"""Digits, class-wise forgetting of class 0 (variant of digits.py).

    lur-jax run configs/digits_class.py --out runs/digits_class
"""

import digits


def get_config():
  c = digits.get_config()
  c.forget.kind = "class"
  c.forget.classes = "0"
  return c
