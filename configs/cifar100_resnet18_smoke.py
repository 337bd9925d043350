"""A CPU smoke variant of cifar100_resnet18.py (see cifar10_resnet18_smoke.py)."""

import cifar10_resnet18_smoke
import cifar100_resnet18


def get_config():
  return cifar10_resnet18_smoke.shrink(cifar100_resnet18.get_config())
