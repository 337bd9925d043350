"""lur_jax: machine unlearning with LUR (Learning to Unlearn while Retaining) in JAX.

Every public name is imported when first used (PEP 562), so ``import lur_jax`` and the
command line's ``--help`` do not pay for JAX, Flax and the data libraries until they are
needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS = {
    "run_audit": ("lur_jax.audit", "run"),
    "random_crop_flip": ("lur_jax.core.augment", "random_crop_flip"),
    "Dataset": ("lur_jax.core.data", "Dataset"),
    "ForgetSplit": ("lur_jax.core.data", "ForgetSplit"),
    "Splits": ("lur_jax.core.data", "Splits"),
    "load_digits": ("lur_jax.core.data", "load_digits"),
    "make_forget_split": ("lur_jax.core.data", "make_forget_split"),
    "ce_objective": ("lur_jax.core.losses", "ce_objective"),
    "cross_entropy": ("lur_jax.core.losses", "cross_entropy"),
    "forget_objective": ("lur_jax.core.losses", "forget_objective"),
    "random_wrong_labels": ("lur_jax.core.losses", "random_wrong_labels"),
    "true_class_confidence": ("lur_jax.core.losses", "true_class_confidence"),
    "LurTerms": ("lur_jax.core.lur", "LurTerms"),
    "lookahead_params": ("lur_jax.core.lur", "lookahead_params"),
    "lur_loss": ("lur_jax.core.lur", "lur_loss"),
    "lur_value_and_grad": ("lur_jax.core.lur", "lur_value_and_grad"),
    "lur_value_and_grad_with_terms": ("lur_jax.core.lur", "lur_value_and_grad_with_terms"),
    "tree_cosine": ("lur_jax.core.lur", "tree_cosine"),
    "CLASSIFICATION": ("lur_jax.core.methods", "CLASSIFICATION"),
    "METHODS": ("lur_jax.core.methods", "METHODS"),
    "Context": ("lur_jax.core.methods", "Context"),
    "Method": ("lur_jax.core.methods", "Method"),
    "Objectives": ("lur_jax.core.methods", "Objectives"),
    "avg_gap": ("lur_jax.core.metrics", "avg_gap"),
    "mia_efficacy": ("lur_jax.core.metrics", "mia_efficacy"),
    "forget_gradients": ("lur_jax.core.saliency", "forget_gradients"),
    "masked_updates": ("lur_jax.core.saliency", "masked_updates"),
    "select_layers": ("lur_jax.core.saliency", "select_layers"),
    "top_fraction_mask": ("lur_jax.core.saliency", "top_fraction_mask"),
    "trim": ("lur_jax.core.saliency", "trim"),
    "Settings": ("lur_jax.core.settings", "Settings"),
    "TrainState": ("lur_jax.core.train", "TrainState"),
    "Variables": ("lur_jax.core.train", "Variables"),
    "check_batches": ("lur_jax.core.train", "check_batches"),
    "conflict_metrics": ("lur_jax.core.train", "conflict_metrics"),
    "gradient_step": ("lur_jax.core.train", "gradient_step"),
    "init_state": ("lur_jax.core.train", "init_state"),
    "l1_penalty": ("lur_jax.core.train", "l1_penalty"),
    "lookahead_alignment": ("lur_jax.core.train", "lookahead_alignment"),
    "lur_step": ("lur_jax.core.train", "lur_step"),
    "objective_step": ("lur_jax.core.train", "objective_step"),
    "optimizer": ("lur_jax.core.train", "optimizer"),
    "sgd": ("lur_jax.core.train", "sgd"),
    "CNN": ("lur_jax.models", "CNN"),
    "MLP": ("lur_jax.models", "MLP"),
    "MODELS": ("lur_jax.models", "MODELS"),
    "BatchNorm": ("lur_jax.models", "BatchNorm"),
    "Model": ("lur_jax.models", "Model"),
    "ResNet18": ("lur_jax.models", "ResNet18"),
    "build_model": ("lur_jax.models", "build_model"),
    "update_running_stats": ("lur_jax.models", "update_running_stats"),
    "wrap_linen": ("lur_jax.models", "wrap_linen"),
    "wrap_nnx": ("lur_jax.models", "wrap_nnx"),
    "Schedule": ("lur_jax.models.diffusion", "Schedule"),
    "UNet": ("lur_jax.models.diffusion", "UNet"),
    "add_noise": ("lur_jax.models.diffusion", "add_noise"),
    "build_unet": ("lur_jax.models.diffusion", "build_unet"),
    "ddim_sample": ("lur_jax.models.diffusion", "ddim_sample"),
    "ddpm_sample": ("lur_jax.models.diffusion", "ddpm_sample"),
    "linear_schedule": ("lur_jax.models.diffusion", "linear_schedule"),
    "noise_objective": ("lur_jax.models.diffusion", "noise_objective"),
    "load_pretrained": ("lur_jax.models.hf", "load_pretrained"),
    "save_pretrained": ("lur_jax.models.hf", "save_pretrained"),
    "Experiment": ("lur_jax.study", "Experiment"),
    "execute": ("lur_jax.study", "execute"),
    "prepare": ("lur_jax.study", "prepare"),
    "run": ("lur_jax.study", "run"),
    "load_dataset": ("lur_jax.study.datasets", "load_dataset"),
    "load_fashion_mnist": ("lur_jax.study.datasets", "load_fashion_mnist"),
    "load_tfds": ("lur_jax.study.datasets", "load_tfds"),
    "plot_diagnostics": ("lur_jax.study.plots", "plot_diagnostics"),
    "TASKS": ("lur_jax.tasks", "TASKS"),
    "Task": ("lur_jax.tasks", "Task"),
    "frechet_distance": ("lur_jax.tasks.diffusion", "frechet_distance"),
    "RunCheckpoints": ("lur_jax.training.checkpoint", "RunCheckpoints"),
    "WriteError": ("lur_jax.training.checkpoint", "WriteError"),
    "params_checksum": ("lur_jax.training.checkpoint", "params_checksum"),
    "enable_compilation_cache": ("lur_jax.training.compile_cache", "enable"),
    "Run": ("lur_jax.training.loop", "Run"),
    "fit": ("lur_jax.training.loop", "fit"),
    "distributed_init": ("lur_jax.training.parallel", "distributed_init"),
    "make_mesh": ("lur_jax.training.sharding", "make_mesh"),
    "run_verdict": ("lur_jax.verdict", "run"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  """A public name, imported on first use; a submodule (``lur_jax.models``) likewise."""
  if name in _EXPORTS:
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
  try:
    return importlib.import_module(f"{__name__}.{name}")
  except ModuleNotFoundError:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
  return sorted({*globals(), *_EXPORTS})
