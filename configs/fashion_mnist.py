"""Fashion-MNIST (Debian's dataset-fashion-mnist), small CNN, random 10% forgetting.

    lur-jax run configs/fashion_mnist.py --out runs/fashion_mnist

Needs `apt-get install dataset-fashion-mnist` (or data.dir pointing at the
gzipped IDX files). To fit the 2-core CPU budget of the benchmark, training
uses a seeded 10,000-image subset of the 54,000 training images
(`--set data.train_limit=0` uses all), trained for 40 epochs so that the
original model memorises its training set (RA 96 vs TA 88) and forgetting a
random 10% has a measurable target, as with ResNet-18 on CIFAR; the test set
is the full 10,000.
"""

import digits


def get_config():
  c = digits.base_config()
  c.methods = "retrain,ft,ga,rl,graddiff,l1_sparse,salun,shs,lur,lur_snip"
  c.data.name = "fashion_mnist"
  c.data.dir = "/usr/share/datasets/fashion-mnist"
  c.data.train_limit = 10000
  c.model = digits.ml_collections.ConfigDict({
      "name": "cnn", "channels": (8, 16), "hidden": 256})
  c.train.update({"epochs": 40, "lr": 0.05, "batch_size": 128})
  c.unlearn.update({"epochs": 2, "lr": 0.01, "batch_size": 128, "forget_batch_size": 64})
  # One model per call: XLA:CPU runs the vmapped (grouped) convolutions 2.4x slower
  # than one model at a time (benchmarks/ensemble_throughput.py); use chunk 0 on a GPU.
  c.audit.update({"models": 16, "chunk": 1})
  # ft, rl, shs, graddiff and lur: chosen by the verdict (`python benchmarks/verdict.py
  # --parts fashion_random`: 12 settings per arm drawn from lur_jax/verdict/space.py,
  # each on 2 seeds, the lowest mean Avg Gap to retraining on the validation split;
  # for lur and graddiff the objective and lookahead order too: these are the winning
  # arms). ga, l1_sparse, salun, lur_snip: benchmarks/sweep.py (six settings per
  # method, seeds 0-1, validation split). The verdict's audit (8 runs) tells this lur
  # setting's models from retrained ones per example (U-LiRA 82.2%; 84.2% on seed 1),
  # ft's barely (50.2%; 54.2%, retraining 51.2%): chosen by Avg Gap, which does not
  # see that (docs/verdict.md).
  c.ft.update({"lr": 0.173, "epochs": 20})
  c.ga.update({"lr": 1e-3, "epochs": 1})
  c.rl.update({"lr": 6.0e-4, "epochs": 20})
  c.graddiff.update({"lr": 0.121, "forget_weight": 0.016, "epochs": 20,
                     "forget_objective": "ga"})
  c.l1_sparse.update({"lr": 0.03, "epochs": None, "alpha": 1e-3})
  c.salun.update({"lr": 3e-3, "epochs": 2})
  c.shs.update({"lr": 0.0321, "forget_weight": 0.0462, "sparsity": 0.99, "epochs": 2})
  c.lur.update({"lr": 0.0126, "forget_weight": 0.128, "inner_lr": 0.0157, "epochs": 20,
                "lookahead": "forget", "mode": "exact", "inner_steps": 1,
                "forget_objective": "ga"})
  c.lur_snip.update({"lr": 0.03, "forget_weight": 0.3, "epochs": 2,  # as swept (with the
                     "lookahead": "retain", "inner_lr": 0.1})  # lur settings of then)
  # Class-wise forgetting (forget.kind=class; configs/fashion_mnist_class.py): the
  # 10,000-image subset with a 15-epoch recipe (the original barely overfits; a whole
  # class leaves a clear trace anyway). ft, rl, shs, graddiff and lur: chosen by the
  # verdict (`python benchmarks/verdict.py --parts fashion_class`: 12 settings per arm
  # drawn from lur_jax/verdict/space.py, each on 2 seeds, the lowest mean Avg Gap to
  # retraining on the validation split; for lur and graddiff the objective and
  # lookahead order too: these are the winning arms). The others come from
  # benchmarks/sweep.py (four settings per method, seed 0, validation split, on
  # 20,000 images); every swept ga setting diverged there. lur_snip pins its
  # lookahead and α in its own section, so lur's winners do not change it.
  c.settings_for = digits.ml_collections.ConfigDict({"class": {
      "data": {"train_limit": 10000}, "train": {"epochs": 15},
      "ft": {"lr": 0.0617, "epochs": 2}, "ga": {"lr": 1e-3, "epochs": None},
      "rl": {"lr": 6.0e-4, "epochs": 20},
      "graddiff": {"forget_objective": "rl", "lr": 0.0057, "forget_weight": 0.847,
                   "epochs": 2},
      "l1_sparse": {"lr": 0.03, "epochs": 2}, "salun": {"lr": 0.01, "epochs": 1},
      "shs": {"lr": 0.00194, "forget_weight": 0.0104, "sparsity": 0.99, "epochs": 5},
      "lur": {"forget_objective": "rl", "lookahead": "forget", "mode": "exact",
              "inner_steps": 1, "lr": 0.00198, "forget_weight": 0.303, "inner_lr": 0.268,
              "epochs": 20},
      "lur_snip": {"lr": 3e-3, "epochs": 2, "forget_weight": 0.03}}})
  return c
