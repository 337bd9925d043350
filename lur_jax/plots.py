"""Gradient-conflict figures from a run's per-step diagnostics."""

from __future__ import annotations

import os
import tempfile

import numpy as np

PANELS = (("grad_cosine", "cos(∇forget, ∇retain) at θ"),
          ("retain_loss", "retain loss (CE on D_r)"),
          ("forget_loss", "forget objective"))


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
      ax.plot(np.arange(len(smoothed)) + window // 2, smoothed, label=name, lw=1.4)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("unlearning step")
    ax.grid(alpha=0.3)
  axes[0].axhline(0.0, color="k", lw=0.8)
  axes[0].legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".png")
  os.close(fd)
  try:
    fig.savefig(tmp, dpi=110)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.unlink(tmp)
