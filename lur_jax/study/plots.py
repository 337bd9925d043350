"""Gradient-conflict figures from a run's per-step diagnostics."""

from __future__ import annotations

import inspect
import os
import tempfile

import numpy as np

from lur_jax.training import checkpoint

PANELS = (("grad_cosine", "cos(∇forget, ∇retain) at θ"),
          ("retain_loss", "retain loss (CE on D_r)"),
          ("forget_loss", "forget objective, change from its start"))
#: Panels drawn as each method's change from its first value, on a symmetric log scale: the
#: methods' forget objectives differ in kind (RL's CE to wrong labels ≈ 15, GA's −CE ≈ 0).
RELATIVE = ("forget_loss",)


def _smooth(values, window):
  values = np.asarray(values, np.float64)
  if window <= 1 or len(values) < window:
    return values
  kernel = np.ones(window) / window
  return np.convolve(values, kernel, mode="valid")


def plot_diagnostics(diagnostics: dict, path: str, title: str = "") -> None:
  """Writes one PNG: per-step gradient cosine and losses, methods overlaid.

  Args:
    diagnostics: ``{method: {"grad_cosine": [...], "retain_loss": [...],
      "forget_loss": [...]}}`` as written to ``diagnostics.json``.
    path: the PNG to write (atomically).
    title: figure title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
  for ax, (key, label) in zip(axes, PANELS):
    for name, history in diagnostics.items():
      values = history.get(key)
      if not values:
        continue
      window = max(1, len(values) // 50)
      smoothed = _smooth(values, window)
      if key in RELATIVE:
        smoothed = smoothed - smoothed[0]
      ax.plot(np.arange(len(smoothed)) + window // 2, smoothed, label=name, lw=1.4)
    if key in RELATIVE:
      ax.set_yscale("symlog", linthresh=0.1)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("unlearning step")
    ax.grid(alpha=0.3)
  axes[0].axhline(0.0, color="k", lw=0.8)
  axes[0].legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  save_figure(fig, path, dpi=110)


def save_grid(images: np.ndarray, rows: int, path: str, title: str) -> None:
  """A grid of images in [0, 1], ``rows`` rows (``images`` ordered row by row), written
  atomically; the diffusion study draws one row per class."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cols = len(images) // rows
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.4))
  for ax, image in zip(axes.ravel(), images):
    ax.imshow(image if image.ndim == 2 else image.squeeze(), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
  fig.suptitle(title, fontsize=9)
  save_figure(fig, path, dpi=100)


def plot_audit(rows: dict, path: str, title: str = "") -> None:
  """Writes one PNG of an audit: per model, U-LiRA's balanced accuracy with its
  95% interval (50% = indistinguishable from retraining), and the spread of
  the per-example accuracies."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = [n for n, r in rows.items() if "ulira" in r]
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 1.6), sharey=True)
  y = np.arange(len(names))[::-1]
  acc = [rows[n]["ulira"]["balanced_accuracy"] for n in names]
  left.errorbar([100 * a["value"] for a in acc], y, fmt="o", color="C0", capsize=3,
                xerr=[[100 * (a["value"] - a["low"]) for a in acc],
                      [100 * (a["high"] - a["value"]) for a in acc]])
  left.axvline(50, color="gray", ls="--", lw=1)
  left.set(yticks=y, yticklabels=names, xlabel="U-LiRA balanced accuracy (%), 95% interval")
  per_example = [[100 * v for v in rows[n]["ulira"]["per_example_accuracy"] if v is not None]
                 for n in names]
  sideways = ({"orientation": "horizontal"} if "orientation" in  # matplotlib >= 3.10
              inspect.signature(right.violinplot).parameters else {"vert": False})
  right.violinplot(per_example, positions=y, showmedians=True, widths=0.8, **sideways)
  right.axvline(50, color="gray", ls="--", lw=1)
  right.set(xlabel="per-example attack accuracy (%)")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  save_figure(fig, path, dpi=110)


def save_figure(fig, path: str, dpi: int) -> None:
  """``fig`` to the PNG ``path`` through a temporary file and a rename; closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  tmp = None
  try:
    with checkpoint.writing(path):
      fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".png")
      os.close(fd)
      fig.savefig(tmp, dpi=dpi)
      os.chmod(tmp, 0o644)
      os.replace(tmp, path)
  finally:
    plt.close(fig)
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
