"""Renders the config-key table of the command-line page from ``lur_jax.study.config_keys``,
with each default read from the shipped base config of its task."""

import os

from lur_jax.study import config as config_lib, config_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASES = {"classification": "configs/digits.py", "diffusion": "configs/ddpm_digits.py",
         "tofu": "configs/tofu.py"}


def flat(config, prefix: str = "", skip=("settings_for",)) -> dict:
  """``{dotted key: value}`` of a config's leaves; the sections in ``skip`` stay whole."""
  out = {}
  for key, value in config.items():
    if hasattr(value, "items") and key not in skip:
      out.update(flat(value, f"{prefix}{key}.", skip))
    else:
      out[f"{prefix}{key}"] = value
  return out


def defaults() -> dict[str, dict]:
  """``{task: {dotted key: value}}`` of the shipped base configs."""
  return {task: flat(config_lib.load(os.path.join(ROOT, path)).to_dict())
          for task, path in BASES.items()}


def _default(key: config_keys.Key, base: dict[str, dict]) -> str:
  if key.default is not None:
    value = key.default
    return value if isinstance(value, str) and value.startswith("from ") else f"`{value!r}`"
  for task in (["classification", "diffusion"] if key.task == "all" else [key.task]):
    if key.name in base[task]:
      where = "" if key.task != "all" or task == "classification" else " (DDPM)"
      return f"`{base[task][key.name]!r}`{where}"
  return "per config"


def markdown() -> str:
  base = defaults()
  lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
  for key in config_keys.KEYS:
    task = "" if key.task == "all" else f" ({key.task})"
    lines.append(f"| `{key.name}` | {_default(key, base)} | {key.allowed} | "
                 f"{key.meaning}{task} |")
  return "\n".join(lines) + "\n"


def write(folder: str) -> None:
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, "config_keys.md"), "w") as f:
    f.write(markdown())
