"""A seconds-long ddpm_digits.py for tests: a one-level U-Net (no halvings: half
the programs to compile of two levels), few steps and samples."""

import ddpm_digits


def get_config():
  c = ddpm_digits.get_config()
  c.model.update({"channels": (8,), "emb_dim": 16})
  c.diffusion.update({"steps": 100, "sample_steps": 5})
  c.classifier.epochs = 2
  c.train.epochs = 2
  c.unlearn.epochs = 1
  for name in ("rl", "salun", "graddiff", "lur"):  # one epoch, whatever the tuned ones
    c[name].epochs = None
  c.ga.epochs = 1
  c.eval.update({"forget_samples": 20, "kept_samples": 4})
  c.smoke = True  # the table and results.json say its numbers mean nothing
  return c
