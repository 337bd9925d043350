"""What only some users need comes in pip extras; a missing one is a one-line error.

``pip install lur_jax`` brings the functional API, the classification and diffusion studies
and the ``lur-jax`` command. The extras add:

- ``lm``: ``tokenizers``, ``rouge-score``, ``safetensors`` and ``jinja2``, for the
  language-model tasks (``task="language"``, ``task="tofu"``) and Hugging Face checkpoints;
- ``tfds``: TensorFlow Datasets, for CIFAR-10/100 and SVHN.
"""

from __future__ import annotations

import importlib
import types

#: The package each extra brings, by the module imported.
PACKAGES = {"tokenizers": ("lm", "tokenizers"), "rouge_score": ("lm", "rouge-score"),
            "safetensors": ("lm", "safetensors"), "jinja2": ("lm", "jinja2"),
            "tensorflow_datasets": ("tfds", "tensorflow-datasets")}


def require(module: str, what: str) -> types.ModuleType:
  """``module`` imported, or a one-line error naming the extra that brings it.

  Args:
    module: a module of :data:`PACKAGES` (``"tokenizers"``, ``"safetensors.numpy"``: the
      first dotted part names the package).
    what: what needs it, for the message (``"task='tofu'"``).

  Returns:
    The module.

  Raises:
    ValueError: when it is not installed, naming the package and the extra.
  """
  try:
    return importlib.import_module(module)
  except ImportError:
    extra, package = PACKAGES[module.split(".")[0]]
    raise ValueError(f"{what} needs {package}, which is not installed; allowed: pip install "
                     f"'lur_jax[{extra}]'") from None
