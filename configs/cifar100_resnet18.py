"""CIFAR-100 (TFDS), ResNet-18, random 10% forgetting.

    lur-jax run configs/cifar100_resnet18.py --out runs/cifar100 \
        --set data.tfds_data_dir=/path/to/tensorflow_datasets

Scissorhands trims layer4/fc at sparsity 0.99 for 10%/20% forgetting (0.9 for 50%).
"""

import cifar10_resnet18


def get_config():
  c = cifar10_resnet18.get_config()
  c.data.name = "tfds:cifar100"
  c.shs.update({"sparsity": 0.99, "layers": "layer4,fc"})
  c.lur_snip.update({"sparsity": 0.99, "layers": "layer4,fc"})
  return c
