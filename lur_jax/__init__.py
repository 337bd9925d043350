"""lur_jax: machine unlearning with LUR (Learning to Unlearn while Retaining) in JAX."""

from lur_jax.augment import random_crop_flip
from lur_jax.checkpoint import RunCheckpoints, params_checksum
from lur_jax.data import (Dataset, ForgetSplit, Splits, load_dataset, load_digits,
                          load_fashion_mnist, load_tfds, make_forget_split)
from lur_jax.diffusion import (Schedule, UNet, add_noise, build_unet, ddim_sample,
                               ddpm_sample, linear_schedule, noise_objective)
from lur_jax.experiment import Experiment, fit, prepare, run
from lur_jax.generative import frechet_distance
from lur_jax.losses import (ce_objective, cross_entropy, forget_objective,
                            random_wrong_labels, true_class_confidence)
from lur_jax.lur import (LurTerms, lookahead_params, lur_loss, lur_value_and_grad,
                         lur_value_and_grad_with_terms, tree_cosine)
from lur_jax.methods import CLASSIFICATION, METHODS, Context, Method, Objectives
from lur_jax.metrics import avg_gap, mia_efficacy
from lur_jax.models import (CNN, MLP, MODELS, BatchNorm, Model, ResNet18, build_model,
                            update_running_stats)
from lur_jax.parallel import distributed_init, make_mesh, shard_step
from lur_jax.plots import plot_diagnostics
from lur_jax.saliency import (forget_gradients, masked_updates, select_layers,
                              top_fraction_mask, trim)
from lur_jax.train import (TrainState, check_batches, conflict_metrics, gradient_step,
                           init_state, l1_penalty, lur_step, objective_step, optimizer, sgd)

__version__ = "0.1.0"
