"""Loading experiment configs (Python files with ``get_config()``) and overrides."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys

import ml_collections

from lur_jax import data, diffusion, lur, losses, methods, models, parallel, train


def load(path: str) -> ml_collections.ConfigDict:
  """Imports ``path`` and returns its ``get_config()``."""
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} does not exist")
  name = "lur_jax_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  # Let a variant import its base from the same folder.
  sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.pop(0)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} has no get_config()")
  return module.get_config()


def _cast(key: str, raw: str, current):
  """Parses ``raw`` to the type of the value it replaces."""
  if isinstance(current, bool):
    if raw.lower() in ("true", "1", "yes"):
      return True
    if raw.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"--set {key}={raw!r}; allowed: true or false")
  if isinstance(current, (int, float)):
    kind = type(current)
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        kind is int and not float(value).is_integer()):
      raise ValueError(f"--set {key}={raw!r}; allowed: a{'n int' if kind is int else ' number'}")
    return kind(value)
  if isinstance(current, str):
    return raw
  try:  # None or a container: a Python literal, else the string itself
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
  """Applies ``["a.b=value", ...]`` to a copy of ``config``.

  Raises:
    ValueError: on a malformed override or a key the config does not have.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  given = {}
  for item in overrides or ():
    key, sep, raw = item.partition("=")
    if not sep or not key:
      raise ValueError(f"--set {item!r}; allowed: KEY=VALUE with KEY a dotted config path")
    if key in given and given[key] != raw:
      raise ValueError(f"--set {key} given twice ({given[key]!r} and {raw!r}); allowed: once")
    given[key] = raw
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
      if not isinstance(node, ml_collections.ConfigDict):
        raise ValueError(f"unknown config key {key!r} ({'.'.join(parents[:i + 1])!r} "
                         "is not a section)")
    if leaf not in node:
      raise ValueError(f"unknown config key {key!r}; allowed in this section: "
                       f"{', '.join(sorted(node.keys()))}")
    if isinstance(node[leaf], ml_collections.ConfigDict):
      raise ValueError(f"config key {key!r} is a section; set one of its keys")
    node[leaf] = _cast(key, raw, node[leaf])
  return config


def _positive(config, key, kind=(int, float), label=None):
  value = config
  for part in key.split("."):
    value = value[part]
  if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
    what = "an int" if kind is int else "a number"
    raise ValueError(f"{label or key}={value!r}; allowed: {what} > 0")


# A method whose settings lay over another method's section.
INHERITS = {"lur_snip": ("lur", "lur_snip")}


def method_settings(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """A method's settings: ``unlearn`` (or ``train`` for retrain) with the
  method's own section laid over it, ``None`` meaning "inherit"."""
  base = config.train if name == "retrain" else config.unlearn
  settings = ml_collections.ConfigDict(base.to_dict())
  for section in INHERITS.get(name, (name,)):
    for key, value in config.get(section, {}).items():
      if value is not None:
        settings[key] = value
  settings.name = name
  return settings


def checkpoint_options(config: ml_collections.ConfigDict) -> dict:
  """``{"every": steps, "keep": count}``, defaults for what the config leaves out."""
  return {"every": 500, "keep": 3, **config.get("checkpoint", {})}


TASKS = ("classification", "diffusion")


def task(config: ml_collections.ConfigDict) -> str:
  """``config.task``: "classification" (the default) or "diffusion"."""
  return config.get("task", "classification")


def _one_of(key, value, allowed):
  if value not in allowed:
    raise ValueError(f"{key}={value!r}; allowed: {', '.join(map(str, allowed))}")


def _number_in(key, value, low, high, kind=(int, float), closed_high=False):
  inside = isinstance(value, kind) and not isinstance(value, bool) and low <= value and (
      value <= high if closed_high else value < high)
  if not inside:
    raise ValueError(f"{key}={value!r}; allowed: a number in [{low}, {high}"
                     f"{']' if closed_high else ')'}")


def _validate_diffusion(config, names, devices) -> None:
  """The checks only a diffusion study needs (see configs/ddpm_digits.py)."""
  _one_of("model.name", config.model.name, ("unet",))
  for name in names:
    if name not in diffusion.METHODS:
      raise ValueError(f"methods: {name!r} does not apply to a diffusion model; allowed: "
                       f"{', '.join(diffusion.METHODS)}")
  _one_of("forget.kind", config.forget.kind, ("class",))
  d = config.diffusion
  _number_in("diffusion.steps", d.steps, 2, 100_000, kind=int)
  for key in ("beta_start", "beta_end"):
    _number_in(f"diffusion.{key}", d[key], 1e-8, 1)
  if not d.beta_start < d.beta_end:
    raise ValueError(f"diffusion.beta_start={d.beta_start!r} >= diffusion.beta_end="
                     f"{d.beta_end!r}; allowed: beta_start < beta_end")
  _number_in("diffusion.p_uncond", d.p_uncond, 0, 1)
  _number_in("diffusion.guidance", d.guidance, 0, 100, closed_high=True)
  _one_of("diffusion.sampler", d.sampler, diffusion.SAMPLERS)
  _number_in("diffusion.sample_steps", d.sample_steps, 1, d.steps, kind=int, closed_high=True)
  _number_in("diffusion.eta", d.eta, 0, 1, closed_high=True)
  for key in ("eval.forget_samples", "eval.kept_samples", "classifier.epochs",
              "classifier.batch_size"):
    _positive(config, key, int)
  _positive(config, "classifier.lr")
  _one_of("classifier.model", config.classifier.model, tuple(models.MODELS))
  parallel.check_divisible("classifier.batch_size", config.classifier.batch_size, devices)


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Checks everything that can be checked without data; returns method names."""
  names = methods.parse_methods(config.methods)
  if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
    raise ValueError(f"seed={config.seed!r}; allowed: an int >= 0")
  if config.data.name not in data.DATASETS:
    raise ValueError(f"data.name={config.data.name!r}; allowed: {', '.join(data.DATASETS)}")
  _one_of("task", task(config), TASKS)
  if task(config) == "classification" and config.model.name not in models.MODELS:
    raise ValueError(f"model.name={config.model.name!r}; allowed: {', '.join(models.MODELS)}")
  if config.eval.split not in ("test", "val"):
    raise ValueError(f"eval.split={config.eval.split!r}; allowed: test, val")
  if config.forget.kind not in data.FORGET_KINDS:
    raise ValueError(f"forget.kind={config.forget.kind!r}; allowed: "
                     f"{', '.join(data.FORGET_KINDS)}")
  for key in ("train.epochs", "train.batch_size", "unlearn.epochs", "unlearn.batch_size",
              "unlearn.forget_batch_size"):
    _positive(config, key, int)
  for key in ("train.lr", "unlearn.lr"):
    _positive(config, key)
  for key, low in (("every", 0), ("keep", 1)):
    value = checkpoint_options(config)[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"checkpoint.{key}={value!r}; allowed: an int >= {low}")
  devices = parallel.check_devices(config.get("devices", 0))
  parallel.check_divisible("train.batch_size", config.train.batch_size, devices)
  if task(config) == "diffusion":
    _validate_diffusion(config, names, devices)
  for name in names:
    settings = method_settings(config, name)
    section = "train" if name == "retrain" else name
    _positive(settings, "epochs", int, f"{section}.epochs")
    _positive(settings, "lr", label=f"{section}.lr")
    _one_of(f"{section}.optimizer", settings.get("optimizer", "sgd"), train.OPTIMIZERS)
    parallel.check_divisible(f"{section}.batch_size", settings.batch_size, devices)
    if name != "retrain":
      parallel.check_divisible(f"{section}.forget_batch_size", settings.forget_batch_size,
                               devices)
    if name == "l1_sparse":
      _positive(settings, "alpha", label="l1_sparse.alpha")
    if name in ("lur", "lur_snip"):
      _positive(settings, "inner_lr", label="lur.inner_lr")
      lur.check_inner_steps(settings.inner_steps)
      if settings.lookahead not in lur.LOOKAHEADS:
        raise ValueError(f"lur.lookahead={settings.lookahead!r}; allowed: "
                         f"{', '.join(lur.LOOKAHEADS)}")
      if settings.mode not in lur.MODES:
        raise ValueError(f"lur.mode={settings.mode!r}; allowed: {', '.join(lur.MODES)}")
      if settings.forget_objective not in losses.FORGET_OBJECTIVES:
        raise ValueError(f"lur.forget_objective={settings.forget_objective!r}; allowed: "
                         f"{', '.join(losses.FORGET_OBJECTIVES)}")
  return names
