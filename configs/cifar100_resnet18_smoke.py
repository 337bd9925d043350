"""A CPU smoke variant of cifar100_resnet18.py (see cifar10_resnet18_smoke.py)."""

import cifar10_resnet18_smoke


def get_config():
  c = cifar10_resnet18_smoke.get_config()
  c.data.name = "tfds:cifar100"
  c.shs.update({"sparsity": 0.99, "layers": "layer4,fc"})
  c.lur_snip.update({"sparsity": 0.99, "layers": "layer4,fc"})
  return c
