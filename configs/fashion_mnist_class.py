"""Fashion-MNIST, class-wise forgetting of class 0 (T-shirt/top); variant of fashion_mnist.py.

    lur-jax run configs/fashion_mnist_class.py --out runs/fashion_mnist_class

The same as `configs/fashion_mnist.py --set forget.kind=class`: the settings
for class-wise forgetting (a 10,000-image, 15-epoch recipe and per-method
settings) live in fashion_mnist.py's `settings_for`.
"""

import fashion_mnist

from lur_jax.study import config as config_lib


def get_config():
  c = fashion_mnist.get_config()
  c.forget.kind = "class"
  c.forget.classes = "0"
  return config_lib.for_kind(c)
