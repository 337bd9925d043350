"""User models and datasets named by an import path ``"package.module:factory"``.

A **model factory** is called as ``factory(num_classes, input_shape, **model_kw)``
(``model_kw``: the other keys of the config's ``model`` section) and returns a
:class:`lur_jax.Model`, a Flax Linen module, or a Flax NNX module. An NNX
factory takes a keyword ``rngs`` (an ``nnx.Rngs``), as NNX constructors do:
lur_jax calls it once per fresh init with the init's key.

A **data factory** is called as ``factory(seed)`` and returns the
:class:`lur_jax.Splits` the built-in loaders return (``lur_jax.core.data.split``
makes one from arrays with the standard protocol).

Each side is checked before any training, with a one-line ValueError naming
the config key: not importable, not callable, the wrong return type, or a
model whose output does not fit the data.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lur_jax import models
from lur_jax.core import data


def is_import_path(name: str) -> bool:
  """Whether a ``model.name`` or ``data.name`` is ``"module:factory"`` (not ``tfds:...``)."""
  return isinstance(name, str) and ":" in name and not name.startswith("tfds:")


def load(spec: str, key: str):
  """The callable that ``spec`` (``"package.module:factory"``) names.

  The working directory is searched too, as ``python -m`` does.
  """
  module_name, _, attr = spec.partition(":")
  if not module_name or not attr:
    raise ValueError(f"{key}={spec!r}; allowed: an import path 'package.module:factory'")
  if os.getcwd() not in sys.path:
    sys.path.append(os.getcwd())
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{key}={spec!r}: cannot import {module_name!r} "
                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
  factory = getattr(module, attr, None)
  if not callable(factory):
    raise ValueError(f"{key}={spec!r}: {module_name!r} has no callable {attr!r}")
  return factory


def _accepts(fn, name: str) -> bool:
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return False
  return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def _call(factory, spec, *args, **kwargs):
  try:
    return factory(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).splitlines()[0] if str(e) else ""
    raise ValueError(f"model.name={spec!r}: the factory raised {type(e).__name__}: "
                     f"{first}") from None


def user_model(spec: str, num_classes: int, input_shape, **model_kw) -> models.Model:
  """The :class:`lur_jax.Model` of the factory that ``spec`` names (see the module doc)."""
  input_shape = tuple(input_shape)
  model = _model_of(spec, (num_classes, input_shape), model_kw, input_shape, jnp.float32)
  check_model(model, spec, num_classes, input_shape)
  return model


def user_lm(spec: str, vocab: int, seq_len: int, **model_kw) -> models.Model:
  """A language model of the user's: ``factory(vocab, seq_len, **model_kw)`` returns a
  :class:`lur_jax.Model`, a Linen or an NNX module mapping tokens ``[B, T]`` (int32) to
  next-token logits ``[B, T, vocab]``; checked on ``[2, seq_len]`` tokens."""
  model = _model_of(spec, (vocab, seq_len), model_kw, (seq_len,), jnp.int32)
  _check_output(model, spec, jax.ShapeDtypeStruct((2, seq_len), jnp.int32), "tokens",
                (2, seq_len, vocab), "[batch, tokens, vocab]")
  return model


def _model_of(spec, args, model_kw, input_shape, dtype) -> models.Model:
  """The factory's return as a :class:`lur_jax.Model` (Linen and NNX modules wrapped)."""
  factory = load(spec, "model.name")
  takes_rngs = _accepts(factory, "rngs")
  made = (_call(factory, spec, *args, rngs=nnx.Rngs(0), **model_kw)
          if takes_rngs else _call(factory, spec, *args, **model_kw))
  if isinstance(made, models.Model):
    return made
  if isinstance(made, nn.Module):
    return models.wrap_linen(made, input_shape, spec, input_dtype=dtype)
  if isinstance(made, nnx.Module):
    if not takes_rngs:
      raise ValueError(f"model.name={spec!r} returns an NNX module but takes no 'rngs'; "
                       "allowed: a factory that takes the keyword rngs (an nnx.Rngs), as NNX "
                       "constructors do")
    return models.wrap_nnx(lambda key: factory(*args, rngs=nnx.Rngs(key), **model_kw), spec)
  raise ValueError(f"model.name={spec!r} returned {type(made).__name__}; allowed: a "
                   "lur_jax.Model, a Flax Linen module or a Flax NNX module")


def check_model(model: models.Model, name: str, num_classes: int, input_shape) -> None:
  """Raises ValueError unless ``model`` maps ``[B, *input_shape]`` to ``[B, num_classes]``."""
  _check_output(model, name, jax.ShapeDtypeStruct((2, *input_shape), jnp.float32), "inputs",
                (2, num_classes), "[batch, num_classes]")


def _check_output(model, name, x, what: str, expected: tuple, allowed: str) -> None:
  """ValueError unless ``model`` takes ``x`` (abstract) and returns ``expected``'s shape."""
  try:
    params = jax.eval_shape(model.init, jax.random.key(0))
    logits = jax.eval_shape(model.apply, params, x)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).splitlines()[0] if str(e) else ""
    raise ValueError(f"model.name={name!r} cannot take {what} of shape {x.shape}: "
                     f"{type(e).__name__}: {first}") from None
  if tuple(logits.shape) != expected:
    raise ValueError(f"model.name={name!r} maps {what} {x.shape} to {tuple(logits.shape)}; "
                     f"allowed: {allowed} = {expected}")


def user_splits(spec: str, seed: int) -> data.Splits:
  """The :class:`lur_jax.Splits` of the data factory that ``spec`` names, checked."""
  factory = load(spec, "data.name")
  try:
    splits = factory(seed)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).splitlines()[0] if str(e) else ""
    raise ValueError(f"data.name={spec!r}: the factory raised {type(e).__name__}: "
                     f"{first}") from None
  if not isinstance(splits, data.Splits):
    raise ValueError(f"data.name={spec!r} returned {type(splits).__name__}; allowed: "
                     "lur_jax.Splits(train, val, test, num_classes)")
  return check_splits(splits, f"data.name={spec!r}")


def check_splits(splits: data.Splits, what: str) -> data.Splits:
  """Checks user-made :class:`Splits` and returns them as float32 inputs and int32
  labels; ValueError (starting with ``what``) on anything the loaders would not return."""
  num_classes = splits.num_classes
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or (
      num_classes < 2):
    raise ValueError(f"{what}: num_classes={num_classes!r}; allowed: an int >= 2")
  parts, shape = {}, None
  for part in ("train", "val", "test"):
    d = getattr(splits, part)
    if not isinstance(d, data.Dataset):
      raise ValueError(f"{what}: {part} is {type(d).__name__}; allowed: lur_jax.Dataset(x, y)")
    x, y = np.asarray(d.x), np.asarray(d.y)
    if x.ndim < 2 or y.shape != x.shape[:1] or not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"{what}: {part} x {x.shape} {x.dtype}, y {y.shape} {y.dtype}; "
                       "allowed: x [N, ...] and integer y [N]")
    if len(y) == 0 and part != "val":
      raise ValueError(f"{what}: the {part} split is empty; allowed: at least one example")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f"{what}: {part} labels span [{y.min()}, {y.max()}]; allowed: "
                       f"0 .. num_classes - 1 = {num_classes - 1}")
    if shape is not None and x.shape[1:] != shape:
      raise ValueError(f"{what}: {part} examples of shape {x.shape[1:]} but train examples "
                       f"of shape {shape}; allowed: the same")
    shape = x.shape[1:]
    data.check_finite(x, f"{what} {part} inputs")
    parts[part] = data.Dataset(x.astype(np.float32), y.astype(np.int32))
  return data.Splits(**parts, num_classes=int(num_classes))
