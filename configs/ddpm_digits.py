"""Class-conditional DDPM on digits (8×8), forgetting class 0.

    lur-jax run configs/ddpm_digits.py --out runs/ddpm_digits

Trains the DDPM on every class (the original) and without class 0 (retrain,
the reference), unlearns class 0 with ga, rl, salun, graddiff and lur, and judges every
model by sampling: UA is 100 − the accuracy of a classifier trained on real
images on 500 samples generated for class 0; the kept classes are judged by
that classifier's accuracy on their samples and by the Fréchet distance
between generated and real kept-class images in its penultimate features
(not Inception-FID).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "diffusion"
  c.seed = 0
  c.devices = 0  # devices to use (0 = all)
  # The device mesh (docs/sharding.md): batches split over data × fsdp, parameters and
  # optimiser state over fsdp (and tensor); one axis may be -1 for the rest of the devices.
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  c.distributed = ml_collections.ConfigDict({
      "coordinator": "", "num_processes": 0, "process_id": -1, "auto": False})
  c.methods = "retrain,ga,rl,salun,graddiff,lur"

  c.data = ml_collections.ConfigDict({
      "name": "digits", "dir": "", "tfds_data_dir": "", "augment": False,
      "train_limit": 0, "test_limit": 0})
  c.model = ml_collections.ConfigDict({"name": "unet", "channels": (16, 32), "emb_dim": 64})
  c.diffusion = ml_collections.ConfigDict({
      "steps": 1000, "beta_start": 1e-4, "beta_end": 0.02,  # linear β schedule
      "p_uncond": 0.1,  # label dropout for classifier-free guidance
      "guidance": 2.0,  # w in ε̂ = (1 + w) ε(x, y) − w ε(x, ∅)
      "sampler": "ddim",  # ddim | ddpm (all `steps`)
      "sample_steps": 50, "eta": 0.0,  # ddim
  })
  # The judge: trained on the real training images of every class, never on samples.
  c.classifier = ml_collections.ConfigDict({
      "model": "cnn", "epochs": 30, "lr": 0.05, "batch_size": 64, "momentum": 0.9,
      "weight_decay": 5e-4})

  # The original DDPM (all classes) and retrain (without the forgotten class).
  c.train = ml_collections.ConfigDict({
      "optimizer": "adam", "epochs": 300, "lr": 2e-3, "batch_size": 128, "momentum": 0.9,
      "weight_decay": 0.0})
  c.forget = ml_collections.ConfigDict({
      "kind": "class", "classes": "0", "fraction": 0.1, "indices": ""})
  c.checkpoint = ml_collections.ConfigDict({"every": 500, "keep": 3})
  c.eval = ml_collections.ConfigDict({
      "split": "test",
      "forget_samples": 500,  # generated per forgotten class (UA)
      "kept_samples": 100,  # generated per kept class (accuracy, FD)
  })

  c.unlearn = ml_collections.ConfigDict({
      "optimizer": "adam", "epochs": 10, "lr": 1e-3, "batch_size": 128,
      "forget_batch_size": 64, "momentum": 0.9, "weight_decay": 0.0})
  # Chosen by the verdict (`python benchmarks/verdict.py --parts ddpm_digits`: 8
  # settings per method drawn from lur_jax/verdict/space.py's ddpm_arms, each on the
  # samples of 2 seeds that are never scored, the lowest mean DDPM gap to the retrain
  # of the same seed). They do not carry to other seeds: on 4 scored seeds their
  # kept-class FD is 1.1-1.6x retrain's (docs/verdict.md). GA has
  # no working setting here (benchmarks/results/ga_class_grid_ddpm_digits.md): UA
  # rises only as the FD explodes; its winner barely forgets.
  c.ga = ml_collections.ConfigDict({"lr": 2.93e-5, "epochs": 10})
  c.rl = ml_collections.ConfigDict({"lr": 1.77e-3, "epochs": 5})
  c.salun = ml_collections.ConfigDict({
      "lr": 5.18e-3, "epochs": 20, "gamma": 0.7, "layers": "all"})
  c.graddiff = ml_collections.ConfigDict({  # LUR's objective without the lookahead
      "lr": 2.32e-3, "epochs": 5, "forget_weight": 0.597, "forget_objective": "rl"})
  c.lur = ml_collections.ConfigDict({
      "lr": 4.74e-4, "epochs": 5,
      "forget_objective": "rl",  # ga | rl
      "lookahead": "retain", "inner_lr": 0.022, "inner_steps": 1,
      "retain_weight": 1.0, "forget_weight": 4.96,
      "mode": "exact", "remat": False, "diagnostics": True,
  })
  return c
