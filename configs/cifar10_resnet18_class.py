"""CIFAR-10, ResNet-18, class-wise forgetting of class 0 (variant of cifar10_resnet18.py).

    lur-jax run configs/cifar10_resnet18_class.py --out runs/cifar10_class \
        --set data.tfds_data_dir=/path/to/tensorflow_datasets
"""

import cifar10_resnet18

from lur_jax.study import config as config_lib


def get_config():
  c = cifar10_resnet18.get_config()
  c.forget.kind = "class"
  c.forget.classes = "0"
  return config_lib.for_kind(c)  # settings_for["class"] in cifar10_resnet18.py
