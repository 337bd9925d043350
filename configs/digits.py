"""Digits (scikit-learn's embedded 8×8 images), MLP, random 10% forgetting.

    lur-jax run configs/digits.py --out runs/digits

Every method of the core registry runs against retraining from scratch.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.devices = 0  # devices on the data axis (0 = all); batch sizes must divide by it
  # Multi-process runs (see the README); empty values fall back to the
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

  # Per-method settings chosen by benchmarks/sweep.py (nine settings per
  # method, mean Avg Gap over seeds 0-2 on the validation split), for random
  # forgetting; `settings_for` holds those for the other kinds, and a run uses the
  # ones for its forget.kind (a kind without any runs with a one-line warning).
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
