"""A seconds-long smoke variant of digits.py for the tests.

    lur-jax run configs/digits_smoke.py --out /tmp/smoke
"""

import digits


def get_config():
  c = digits.get_config()
  c.train.epochs = 3
  for name in ("ft", "ga", "rl", "graddiff", "l1_sparse", "salun", "shs", "lur", "lur_snip"):
    c[name].epochs = None  # every method one epoch, whatever its tuned count
    for kind in c.settings_for.values():
      if name in kind and "epochs" in kind[name]:
        del kind[name]["epochs"]
  c.unlearn.epochs = 1
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c
