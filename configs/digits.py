"""Digits (scikit-learn's embedded 8×8 images), MLP, random 10% forgetting.

    lur-jax run configs/digits.py --out runs/digits

Every method of the core registry runs against retraining from scratch.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Everything but the digits-tuned method settings: the keys and defaults the
  other configs (fashion_mnist.py, cifar10_resnet18.py) start from."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.devices = 0  # devices to use (0 = all)
  # The device mesh (docs/sharding.md): batches split over data × fsdp, parameters and
  # optimiser state over fsdp (and tensor); one axis may be -1 for the rest of the devices.
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  # Multi-process runs (docs/scale_out.md); empty values fall back to the
  # JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID variables,
  # and auto=True lets JAX detect a TPU pod slice or a SLURM/MPI job.
  c.distributed = ml_collections.ConfigDict({
      "coordinator": "", "num_processes": 0, "process_id": -1, "auto": False})
  c.methods = "retrain,ft,ga,rl,graddiff,l1_sparse,salun,shs,lur,lur_snip"

  c.data = ml_collections.ConfigDict({
      "name": "digits",  # digits | fashion_mnist | tfds:<name>
      "dir": "",  # fashion_mnist: folder of the IDX files
      "tfds_data_dir": "",  # tfds:<name>: TFDS data dir ("" = TFDS's default)
      "augment": False,  # random crop (padding 4) and flip on training batches
      "train_limit": 0, "test_limit": 0,  # keep this many examples (0 = all)
  })
  c.model = ml_collections.ConfigDict({"name": "mlp"})

  # The original model (trained on all of D) and `retrain` (on D_r) use this recipe.
  c.train = ml_collections.ConfigDict({
      "epochs": 30, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4})

  c.forget = ml_collections.ConfigDict({
      "kind": "random",  # random | class | indices
      "fraction": 0.1,  # kind=random
      "classes": "0",  # kind=class: comma-separated ints
      "indices": "",  # kind=indices: comma-separated ints or a .txt/.npy file
  })

  # Resumable state every N steps (0 = never); a finished method is saved with its
  # results in models/<name>. A rerun with the same --out skips finished methods
  # and resumes the interrupted one from its newest good checkpoint.
  c.checkpoint = ml_collections.ConfigDict({"every": 500, "keep": 3})

  # TA and MIA are measured on the test split; tuning sweeps use "val".
  c.eval = ml_collections.ConfigDict({"split": "test"})

  # `lur-jax audit`: M shadow runs (M originals; 2M retrains and 2M unlearned models
  # per method: M that forget random halves of a pool twice the forget set, for the
  # per-example attack, and M that forget the study's forget set, for the NeurIPS-2023
  # score and the metrics with intervals). methods "" = the methods above.
  c.audit = ml_collections.ConfigDict({
      "models": 32, "methods": "",
      "examples": 0,  # pool examples the per-example attack scores (0 = the whole pool)
      "chunk": 0,  # models vmapped per call (0 = all at once)
      "bootstrap": 1000,  # resamples for the 95% intervals
  })

  # Defaults every unlearning method inherits; a method's own section
  # overrides them (None = inherit).
  c.unlearn = ml_collections.ConfigDict({
      "epochs": 5, "lr": 0.01, "batch_size": 64, "forget_batch_size": 32,
      "momentum": 0.9, "weight_decay": 5e-4})

  # Method settings chosen by benchmarks/sweep.py (nine settings per method, mean
  # Avg Gap over seeds 0-2 on the validation split) before the verdict; the other
  # configs start from them. get_config() below lays the verdict's over them.
  c.settings_kind = "random"
  c.settings_for = ml_collections.ConfigDict({
      # Gradient ascent on a whole class (ga, graddiff, lur with the ga objective)
      # diverged or barely forgot within the swept budget, so lur uses rl here.
      # Every swept Scissorhands setting diverged on some seed; its settings are kept.
      "class": {
          "ft": {"lr": 0.3, "epochs": 20}, "ga": {"lr": 0.1, "epochs": 2},
          "rl": {"lr": 0.01, "epochs": 10}, "graddiff": {"lr": 0.03, "forget_weight": 0.1},
          "lur": {"forget_objective": "rl", "forget_weight": 1.0, "lr": 0.03, "epochs": 10},
          "l1_sparse": {"lr": 0.3, "epochs": 20}, "salun": {"lr": 0.01, "epochs": 10},
          "lur_snip": {"lr": 0.03, "epochs": 10}},
  })
  c.ft = ml_collections.ConfigDict({"lr": 0.1, "epochs": 5})
  c.ga = ml_collections.ConfigDict({"lr": 1e-3, "epochs": 10})
  c.rl = ml_collections.ConfigDict({"lr": 1e-4, "epochs": 5})
  c.graddiff = ml_collections.ConfigDict({
      "lr": 0.01, "epochs": None, "forget_weight": 0.3, "forget_objective": "ga"})
  c.l1_sparse = ml_collections.ConfigDict({"lr": 0.1, "epochs": None, "alpha": 1e-3})
  c.salun = ml_collections.ConfigDict({
      "lr": 1e-4, "epochs": None, "gamma": 0.5, "layers": "all"})
  c.shs = ml_collections.ConfigDict({
      "lr": 0.01, "epochs": None, "sparsity": 0.97, "layers": "fc", "forget_weight": 0.1})
  c.lur_snip = ml_collections.ConfigDict({  # the trim step, then LUR with the lur settings
      "lr": 0.1, "epochs": None, "sparsity": 0.9, "layers": "fc", "forget_weight": None})
  c.lur = ml_collections.ConfigDict({
      "lr": 0.1, "epochs": None,
      "forget_objective": "ga",  # ga | rl
      "lookahead": "retain",  # retain | forget
      "inner_lr": 0.1, "inner_steps": 1,
      "retain_weight": 1.0, "forget_weight": 0.03,
      "mode": "exact",  # exact | hvp | first_order
      "remat": False,
      "diagnostics": True,  # per-step gradient cosine and losses
  })
  return c


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  # Per-method settings chosen by the verdict (`python benchmarks/verdict.py --parts
  # digits_random,digits_class`): 24 settings per method drawn from the ranges of
  # lur_jax/verdict/space.py, each run on 3 seeds, the lowest mean Avg Gap to
  # retraining on the validation split wins (benchmarks/results/verdict/). For `lur`
  # and `graddiff` the forget objective, lookahead order and K were searched too:
  # these are the winning arms. They are one draw's winners: the replicates in
  # benchmarks/results/verdict-replicates/ (another draw, another seed) picked other
  # arms and settings. `settings_kind` says which kind the sections hold;
  # `settings_for` holds the other kinds', and a run uses the ones for its
  # forget.kind (a kind without any runs with a one-line warning).
  c.settings_for = ml_collections.ConfigDict({
      # Gradient ascent on a whole class (ga, and graddiff or lur with the ga
      # objective) barely forgets or diverges over the whole range; the rl objective
      # wins here for graddiff, lur and lur_snip.
      "class": {
          "ft": {"lr": 0.26, "epochs": 20}, "ga": {"lr": 0.0061, "epochs": 5},
          "rl": {"lr": 0.0214, "epochs": 20},
          "graddiff": {"forget_objective": "rl", "lr": 0.0425, "forget_weight": 0.0158,
                       "epochs": 5},
          "lur": {"forget_objective": "rl", "lookahead": "retain", "mode": "hvp",
                  "inner_steps": 4, "lr": 0.06, "forget_weight": 0.0348, "inner_lr": 0.104,
                  "epochs": 10},
          "l1_sparse": {"lr": 0.0089, "alpha": 0.0078, "epochs": 20},
          "salun": {"lr": 0.0077, "gamma": 0.3, "epochs": 20},
          "shs": {"lr": 0.00255, "forget_weight": 0.0187, "sparsity": 0.9, "epochs": 2},
          "lur_snip": {"forget_objective": "rl", "lookahead": "retain", "mode": "exact",
                       "inner_steps": 1, "lr": 0.0625, "forget_weight": 0.0168,
                       "inner_lr": 0.0185, "sparsity": 0.97, "epochs": 5}},
  })
  c.ft = ml_collections.ConfigDict({"lr": 0.26, "epochs": 20})
  c.ga = ml_collections.ConfigDict({"lr": 0.00229, "epochs": 5})
  c.rl = ml_collections.ConfigDict({"lr": 1.14e-4, "epochs": 5})
  c.graddiff = ml_collections.ConfigDict({
      "lr": 0.0449, "epochs": 20, "forget_weight": 0.0289, "forget_objective": "ga"})
  c.l1_sparse = ml_collections.ConfigDict({"lr": 0.162, "epochs": 10, "alpha": 3.35e-5})
  c.salun = ml_collections.ConfigDict({
      "lr": 1.65e-4, "epochs": 2, "gamma": 0.5, "layers": "all"})
  c.shs = ml_collections.ConfigDict({
      "lr": 0.0094, "epochs": 20, "sparsity": 0.97, "layers": "fc", "forget_weight": 0.0353})
  c.lur_snip = ml_collections.ConfigDict({  # the trim step, then LUR (lur's other settings)
      "lr": 0.0381, "epochs": 2, "sparsity": 0.97, "layers": "fc", "forget_weight": 0.176,
      "inner_lr": 0.0421, "forget_objective": "ga", "lookahead": "retain", "mode": "exact",
      "inner_steps": 1})
  c.lur.update({"lr": 0.0126, "epochs": 20, "lookahead": "forget", "inner_lr": 0.0157,
                "forget_weight": 0.128, "forget_objective": "ga", "mode": "exact",
                "inner_steps": 1})
  return c
