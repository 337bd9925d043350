"""CIFAR-10 (TFDS), ResNet-18, random 10% forgetting, SalUn/Scissorhands settings.

    lur-jax run configs/cifar10_resnet18.py --out runs/cifar10 \
        --set data.tfds_data_dir=/path/to/tensorflow_datasets

Variants: --set forget.fraction=0.5 (random 50%), or configs/cifar10_resnet18_class.py.
The data must be prepared beforehand (`tfds build cifar10 --file_format=array_record`);
nothing is downloaded at run time. Hyper-parameters are those of the public
SalUn / Scissorhands code for CIFAR-10, ResNet-18, 10% random forgetting
(docs/protocol.md); the LUR settings are our starting point, not tuned on CIFAR.
"""

import digits


def get_config():
  c = digits.base_config()
  c.methods = "retrain,ft,ga,rl,graddiff,l1_sparse,salun,shs,lur,lur_snip"
  c.data.update({"name": "tfds:cifar10", "augment": True})
  c.model = digits.ml_collections.ConfigDict({"name": "resnet18", "width": 64})
  c.train.update({"epochs": 182, "lr": 0.1, "batch_size": 256, "momentum": 0.9,
                  "weight_decay": 5e-4})
  c.unlearn.update({"epochs": 10, "lr": 0.01, "batch_size": 256, "forget_batch_size": 256})
  c.ft.update({"lr": 0.01, "epochs": 10})
  c.ga.update({"lr": 1e-4, "epochs": 5})
  c.rl.update({"lr": 0.01, "epochs": 10})
  c.graddiff.update({"lr": 0.01, "epochs": 10, "forget_weight": 0.1})
  c.l1_sparse.update({"lr": 0.01, "epochs": 10, "alpha": 1e-4})
  c.salun.update({"lr": 0.013, "epochs": 10, "gamma": 0.5, "layers": "all"})
  c.shs.update({"lr": 5e-3, "epochs": 10, "sparsity": 0.97, "layers": "layer3,layer4,fc",
                "forget_weight": 0.05})
  # hvp: the exact LUR gradient by Hessian-vector products, 2.9x faster than
  # reverse-over-reverse on ResNet-18 (benchmarks/results/step_cost-cpu-cpu.md).
  c.lur.update({"lr": 5e-3, "epochs": 10, "forget_objective": "ga", "inner_lr": 0.01,
                "forget_weight": 0.05, "mode": "hvp"})
  c.lur_snip.update({"sparsity": 0.97, "layers": "layer3,layer4,fc"})
  # Class-wise forgetting (configs/cifar10_resnet18_class.py): LUR with the rl objective.
  c.settings_for = digits.ml_collections.ConfigDict({
      "class": {"lur": {"forget_objective": "rl"}}})
  return c
