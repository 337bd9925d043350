"""Fashion-MNIST, class-wise forgetting of class 0 (T-shirt/top); variant of fashion_mnist.py.

    lur-jax run configs/fashion_mnist_class.py --out runs/fashion_mnist_class
"""

import fashion_mnist


def get_config():
  c = fashion_mnist.get_config()
  c.forget.kind = "class"
  c.forget.classes = "0"
  c.lur.forget_objective = "rl"
  return c
