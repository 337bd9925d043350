"""What a study writes: the header (config, versions, devices), the columns
relative to retrain, and one Markdown table for every task."""

from __future__ import annotations

import os
import platform
from typing import NamedTuple

import jax


class Column(NamedTuple):
  """A column of the results table: ``row[key]`` with ``digits`` decimals (in
  scientific notation with ``scientific``: p-values)."""

  header: str
  key: str
  digits: int = 2
  scientific: bool = False


def versions() -> dict:
  """Python, lur_jax and its main dependencies, and ``XLA_FLAGS``."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  out = {"python": platform.python_version()}
  for pkg in ("lur_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
              "scikit-learn", "ml_collections"):
    try:
      out[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      out[pkg] = None
  out["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")  # compiler flags change speed and memory
  return out


def device_description(mesh: jax.sharding.Mesh | None = None) -> str:
  """``platform:kind xN`` for the devices of ``mesh`` (default: all devices)."""
  devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
  return f"{devices[0].platform}:{devices[0].device_kind} x{len(devices)}"


#: What a smoke config's (``smoke=True``) table and results.json say first.
SMOKE = ("numbers are not meaningful: a tiny model and a few steps check that the flow runs, "
         "not what a method does")


def header(exp) -> dict:
  """What every results.json starts with: config, versions, devices, data sizes (and, for a
  smoke config, :data:`SMOKE`)."""
  fs = exp.forget
  return {**({"smoke": SMOKE} if exp.config.get("smoke") else {}),
          "config": exp.config.to_dict(), "versions": versions(),
          "device": device_description(exp.mesh),
          "devices": {"count": exp.mesh.size, "kind": exp.mesh.devices.flat[0].device_kind,
                      "processes": jax.process_count()},
          "mesh": {name: int(size) for name, size in exp.mesh.shape.items()},
          "data": {"train": len(exp.splits.train), "forget": len(fs.forget),
                   "retain": len(fs.retain), "test": len(fs.test),
                   "forgotten_classes": list(fs.forgotten_classes)}}


def add_comparisons(results: dict, compare, reference: dict | None = None) -> None:
  """Adds to every row (the original's too) ``compare(row, retrain's row)`` and
  ``seconds_vs_retrain``; ``compare`` gets ``reference`` without a retrain row (``None``
  without either), and the ratio is ``None`` where the retrain took no time (given)."""
  reference = results["methods"].get("retrain", reference)
  for row in [*results["methods"].values(), results["original"]]:
    row.update(compare(row, reference))
    row["seconds_vs_retrain"] = (row["seconds"] / reference["seconds"]
                                 if reference is not None and reference.get("seconds") else None)


def _cell(value, digits=2, scientific=False) -> str:
  return "-" if value is None else f"{value:.{digits}{'e' if scientific else 'f'}}"


def markdown_table(results: dict, columns: tuple[Column, ...]) -> str:
  """One row per model (the original first): ``columns``, seconds and × retrain."""
  lines = [*([f"*smoke: {results['smoke']}*", ""] if results.get("smoke") else []),
           "| method | " + " | ".join(c.header for c in columns) + " | seconds | × retrain |",
           "|---" * (len(columns) + 3) + "|"]
  for name, row in {"original": results["original"], **results["methods"]}.items():
    timing = f" {_cell(row['seconds'])} | {_cell(row['seconds_vs_retrain'], 3)} |"
    if "diverged_at_step" in row:
      lines.append(f"| {name} | diverged at step {row['diverged_at_step']} "
                   + "|" * len(columns) + timing)
      continue
    lines.append(f"| {name} | " + " | ".join(_cell(row[c.key], c.digits, c.scientific) for c in columns)
                 + " |" + timing)
  return "\n".join(lines) + "\n"
