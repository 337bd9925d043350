"""Loading experiment configs (Python files with ``get_config()``) and overrides."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys

import ml_collections

from lur_jax.core import checks, data, methods, train
from lur_jax.study import datasets, plugins
from lur_jax.training import parallel, sharding


def shipped() -> str | None:
  """The folder of the shipped configs: the repository's ``configs/`` beside the package (a
  source checkout or an editable install), else the wheel's ``share/lur_jax/configs``."""
  here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for folder in (os.path.join(here, "configs"),
                 os.path.join(sys.prefix, "share", "lur_jax", "configs")):
    if os.path.isfile(os.path.join(folder, "digits.py")):
      return folder
  return None


def resolve(path: str) -> str:
  """A config file's path: ``path`` itself, or the shipped config of that name
  (``digits`` or ``digits.py`` -> ``<shipped>/digits.py``).

  Raises:
    ValueError: for neither, naming the shipped configs.
  """
  if os.path.isfile(path):
    return path
  folder = shipped()
  name = path if path.endswith(".py") else f"{path}.py"
  if folder and os.sep not in path and os.path.isfile(os.path.join(folder, name)):
    return os.path.join(folder, name)
  names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py")) if folder else []
  raise ValueError(f"config file {path!r} does not exist; allowed: a .py file with "
                   f"get_config(), or a shipped config: {', '.join(names) or 'none found'}")


def load(path: str) -> ml_collections.ConfigDict:
  """Imports ``path`` (or the shipped config of that name, :func:`resolve`) and returns its
  ``get_config()``, with the settings for its forget kind laid over it (:func:`for_kind`).

  Raises:
    ValueError: for a missing file, a file that is not Python, one that fails to import,
      has no ``get_config()`` or whose ``get_config()`` does not return a ConfigDict.
  """
  path = resolve(path)
  if not path.endswith(".py"):
    raise ValueError(f"config file {path!r} is not a Python file; allowed: a .py file with "
                     "get_config()")
  name = "lur_jax_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  # Let a variant import its base from the same folder.
  sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except (the user's file: say what broke)
    raise ValueError(f"config file {path!r} failed to import: {type(e).__name__}: {e}"
                     ) from None
  finally:
    sys.path.pop(0)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} has no get_config()")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"config file {path!r}: get_config() returned a "
                     f"{type(config).__name__}; allowed: an ml_collections.ConfigDict")
  return for_kind(config)


def tuned_kinds(config: ml_collections.ConfigDict) -> list[str]:
  """The forget kinds a config holds tuned settings for (none without ``settings_for``)."""
  if config.get("settings_for") is None:
    return []
  return [config.settings_kind, *(k for k in config.settings_for if k != config.settings_kind)]


def for_kind(config: ml_collections.ConfigDict, kind: str | None = None):
  """The config with the settings tuned for forget kind ``kind`` (default: its
  ``forget.kind``) laid over its sections.

  A config may say which kind its sections are tuned for (``settings_kind``)
  and hold, in ``settings_for``, per other kind the keys that differ. The
  values a switch replaces are kept under the old kind, so switching back
  restores them. A kind without tuned settings leaves the config as it is
  (:func:`kind_warning` says so).
  """
  kind = config.forget.kind if kind is None else kind
  if kind not in tuned_kinds(config) or kind == config.settings_kind:
    return config
  config = ml_collections.ConfigDict(config.to_dict())
  new = config.settings_for[kind]
  config.settings_for[config.settings_kind] = {
      section: {key: config[section][key] for key in values} for section, values in new.items()}
  for section, values in new.items():
    config[section].update(values.to_dict())
  config.settings_kind = kind
  return config


def kind_warning(config: ml_collections.ConfigDict) -> str | None:
  """One line when the methods run with settings tuned for another forget kind."""
  kinds, kind = tuned_kinds(config), config.forget.kind
  if not kinds or kind == config.settings_kind:
    return None
  if kind not in kinds:
    return (f"warning: no settings were tuned for forget.kind={kind!r} in this config "
            f"(tuned: {', '.join(kinds)}); the methods run with those for "
            f"{config.settings_kind!r}")
  return (f"warning: forget.kind={kind!r} but the method settings are those for "
          f"{config.settings_kind!r}; lur_jax.study.config.for_kind(config) lays the ones for "
          f"{kind!r} over them")


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
  for item in overrides or ():  # a new forget kind brings its settings, then the overrides
    key, _, raw = item.partition("=")
    if key == "forget.kind":
      config = for_kind(config, raw)
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


def method_settings(config: ml_collections.ConfigDict, name: str) -> methods.Settings:
  """A method's settings: ``unlearn`` (or ``train`` for retrain), the sections it
  inherits (``Method.inherits``), its registry defaults (``Method.defaults``), then its
  own section, ``None`` meaning "inherit"."""
  settings = dict((config.train if name == "retrain" else config.unlearn).to_dict())
  inherits = methods.METHODS[name].inherits
  for section in (name,) if inherits is None else (inherits, name):
    if section == name:
      settings.update(methods.METHODS[name].defaults or {})
    settings.update({k: v for k, v in config.get(section, {}).items() if v is not None})
  return methods.Settings(settings, name=name)


def checkpoint_options(config: ml_collections.ConfigDict) -> dict:
  """``{"every": steps, "keep": count}``, defaults for what the config leaves out."""
  return {"every": 500, "keep": 3, **config.get("checkpoint", {})}


def validate(config: ml_collections.ConfigDict) -> list[str]:
  """Checks the keys every study shares, before any data is read; returns the
  method names. A task checks its own sections (:mod:`lur_jax.tasks`) and a
  method its own settings (``Method.check``)."""
  names = methods.parse_methods(config.methods)
  if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
    raise ValueError(f"seed={config.seed!r}; allowed: an int >= 0")
  if config.data.name not in datasets.DATASETS and not plugins.is_import_path(config.data.name):
    raise ValueError(f"data.name={config.data.name!r}; allowed: {', '.join(datasets.DATASETS)}, "
                     "or an import path 'package.module:factory'")
  checks.one_of("eval.split", config.eval.split, ("test", "val"))
  checks.one_of("forget.kind", config.forget.kind, data.FORGET_KINDS)
  for key in ("train.epochs", "train.batch_size", "unlearn.epochs", "unlearn.batch_size",
              "unlearn.forget_batch_size"):
    section, leaf = key.split(".")
    checks.positive(config[section][leaf], key, int)
  for key in ("train", "unlearn"):
    checks.positive(config[key].lr, f"{key}.lr")
  for key, low in (("every", 0), ("keep", 1)):
    value = checkpoint_options(config)[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"checkpoint.{key}={value!r}; allowed: an int >= {low}")
  sizes = mesh_sizes(config)
  devices, over = sizes["data"] * sizes["fsdp"], "devices"
  if sizes["fsdp"] > 1 or sizes["tensor"] > 1:
    over = "mesh.data × mesh.fsdp"
  parallel.check_divisible("train.batch_size", config.train.batch_size, devices, over)
  for name in names:
    settings = method_settings(config, name)
    section = "train" if name == "retrain" else name
    checks.positive(settings.epochs, f"{section}.epochs", int)
    checks.positive(settings.lr, f"{section}.lr")
    checks.one_of(f"{section}.optimizer", settings.get("optimizer", "sgd"), train.OPTIMIZERS)
    checks.one_of(f"{section}.iterate", settings.get("iterate", "retain"), ("retain", "forget"))
    checks.one_of(f"{section}.schedule", settings.get("schedule", "constant"), train.SCHEDULES)
    parallel.check_divisible(f"{section}.batch_size", settings.batch_size, devices, over)
    if name != "retrain":
      parallel.check_divisible(f"{section}.forget_batch_size", settings.forget_batch_size,
                               devices, over)
  return names


def mesh_sizes(config) -> dict[str, int]:
  """The config's mesh: ``{"data", "fsdp", "tensor"}`` over ``devices`` devices.

  ``mesh.data`` defaults to −1 (the rest), ``mesh.fsdp`` and ``mesh.tensor`` to 1,
  so a config without a ``mesh`` section is data parallel over every device.

  Raises:
    ValueError: for a bad ``devices`` or a mesh that does not fit them.
  """
  devices = parallel.check_devices(config.get("devices", 0))
  mesh = config.get("mesh", None) or {}
  return sharding.mesh_shape(mesh.get("data", -1), mesh.get("fsdp", 1), mesh.get("tensor", 1),
                             devices)
