"""lur_jax: machine unlearning with LUR (Learning to Unlearn while Retaining) in JAX."""

from lur_jax.audit import run as run_audit
from lur_jax.core.augment import random_crop_flip
from lur_jax.core.data import Dataset, ForgetSplit, Splits, load_digits, make_forget_split
from lur_jax.core.losses import (
  ce_objective,
  cross_entropy,
  forget_objective,
  random_wrong_labels,
  true_class_confidence,
)
from lur_jax.core.lur import (
  LurTerms,
  lookahead_params,
  lur_loss,
  lur_value_and_grad,
  lur_value_and_grad_with_terms,
  tree_cosine,
)
from lur_jax.core.methods import CLASSIFICATION, METHODS, Context, Method, Objectives
from lur_jax.core.metrics import avg_gap, mia_efficacy
from lur_jax.core.saliency import (
  forget_gradients,
  masked_updates,
  select_layers,
  top_fraction_mask,
  trim,
)
from lur_jax.core.settings import Settings
from lur_jax.core.train import (
  TrainState,
  Variables,
  check_batches,
  conflict_metrics,
  gradient_step,
  init_state,
  l1_penalty,
  lookahead_alignment,
  lur_step,
  objective_step,
  optimizer,
  sgd,
)
from lur_jax.models import (
  CNN,
  MLP,
  MODELS,
  BatchNorm,
  Model,
  ResNet18,
  build_model,
  update_running_stats,
  wrap_linen,
  wrap_nnx,
)
from lur_jax.models.diffusion import (
  Schedule,
  UNet,
  add_noise,
  build_unet,
  ddim_sample,
  ddpm_sample,
  linear_schedule,
  noise_objective,
)
from lur_jax.models.hf import load_pretrained, save_pretrained
from lur_jax.study import Experiment, execute, prepare, run
from lur_jax.study.datasets import load_dataset, load_fashion_mnist, load_tfds
from lur_jax.study.plots import plot_diagnostics
from lur_jax.tasks import TASKS, Task
from lur_jax.tasks.diffusion import frechet_distance
from lur_jax.training.checkpoint import RunCheckpoints, WriteError, params_checksum
from lur_jax.training.compile_cache import enable as enable_compilation_cache
from lur_jax.training.loop import Run, fit
from lur_jax.training.parallel import distributed_init
from lur_jax.training.sharding import make_mesh
from lur_jax.verdict import run as run_verdict

__version__ = "0.1.0"

__all__ = [
    "BatchNorm", "CLASSIFICATION", "CNN", "Context", "Dataset", "Experiment",
    "ForgetSplit", "LurTerms", "METHODS", "MLP", "MODELS", "Method", "Model", "Objectives",
    "ResNet18", "Run", "RunCheckpoints", "Schedule", "Settings", "Splits", "TASKS", "Task", "TrainState",
    "UNet", "Variables",
    "WriteError", "add_noise", "avg_gap", "build_model", "build_unet", "ce_objective",
    "check_batches", "conflict_metrics", "cross_entropy", "ddim_sample", "ddpm_sample",
    "distributed_init", "enable_compilation_cache", "execute", "fit", "forget_gradients",
    "forget_objective", "frechet_distance", "gradient_step", "init_state", "l1_penalty",
    "linear_schedule", "load_dataset", "load_pretrained", "load_digits", "load_fashion_mnist", "load_tfds",
    "lookahead_alignment", "lookahead_params", "lur_loss", "lur_step", "lur_value_and_grad",
    "lur_value_and_grad_with_terms", "make_forget_split", "make_mesh", "masked_updates",
    "mia_efficacy", "noise_objective", "objective_step", "optimizer", "params_checksum",
    "plot_diagnostics", "prepare", "random_crop_flip", "random_wrong_labels", "run",
    "run_audit", "run_verdict", "save_pretrained",
    "select_layers", "sgd", "top_fraction_mask", "tree_cosine", "trim",
    "true_class_confidence", "update_running_stats", "wrap_linen", "wrap_nnx",
]
