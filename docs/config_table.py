"""Writes ``docs/config_keys.md``, the config-key reference, from
``lur_jax.study.config_keys`` (``python docs/config_table.py``; ``tests/test_docs.py`` checks
that the committed page is current)."""

import os

from lur_jax.study import config_keys

HERE = os.path.dirname(os.path.abspath(__file__))
flat, defaults = config_keys.flat, config_keys.defaults


def write(folder: str = HERE) -> None:
  with open(os.path.join(folder, "config_keys.md"), "w") as f:
    f.write(config_keys.reference())


if __name__ == "__main__":
  write()
