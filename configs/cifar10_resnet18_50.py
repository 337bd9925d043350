"""CIFAR-10, ResNet-18, random 50% forgetting (variant of cifar10_resnet18.py).

    lur-jax run configs/cifar10_resnet18_50.py --out runs/cifar10_50 \
        --set data.tfds_data_dir=/path/to/tensorflow_datasets
"""

import cifar10_resnet18


def get_config():
  c = cifar10_resnet18.get_config()
  c.forget.fraction = 0.5
  return c
