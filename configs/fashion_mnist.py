"""Fashion-MNIST (Debian's dataset-fashion-mnist), small CNN, random 10% forgetting.

    lur-jax run configs/fashion_mnist.py --out runs/fashion_mnist

Needs `apt-get install dataset-fashion-mnist` (or data.dir pointing at the
gzipped IDX files). To fit the 2-core CPU budget of the benchmark, training
uses a seeded 20,000-image subset of the 54,000 training images
(`--set data.train_limit=0` uses all); the test set is the full 10,000.
"""

import digits


def get_config():
  c = digits.get_config()
  c.methods = "retrain,ft,ga,rl,graddiff,l1_sparse,salun,shs,lur,lur_snip"
  c.data.name = "fashion_mnist"
  c.data.dir = "/usr/share/datasets/fashion-mnist"
  c.data.train_limit = 20000
  c.model = digits.ml_collections.ConfigDict({
      "name": "cnn", "channels": (8, 16), "hidden": 256})
  c.train.update({"epochs": 15, "lr": 0.05, "batch_size": 128})
  c.unlearn.update({"epochs": 2, "lr": 0.01, "batch_size": 128, "forget_batch_size": 64})
  # Chosen by benchmarks/sweep.py (four settings per method, seed 0, validation split).
  c.ft.update({"lr": 0.03, "epochs": 1})
  c.ga.lr = 1e-4
  c.rl.lr = 1e-3
  c.graddiff.update({"lr": 0.03, "forget_weight": 0.1})
  c.l1_sparse.update({"lr": 0.03, "epochs": None, "alpha": 1e-3})
  c.salun.update({"lr": 3e-3, "epochs": None})
  c.shs.update({"lr": 0.03, "forget_weight": 0.03})
  c.lur.update({"lr": 0.03, "forget_weight": 0.1})
  c.lur_snip.update({"lr": 0.03, "forget_weight": 0.1})
  return c
