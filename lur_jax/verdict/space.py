"""What the verdict tunes: the arms (a method with fixed settings) and the
ranges their settings are drawn from, the same number of draws for every arm.

A range is :class:`LogUniform` (continuous: each draw becomes a per-member
value of one vmapped ensemble) or a tuple of choices (discrete: each choice
is its own compiled program). Ranges span a factor of 30 to 100 around the
settings hand-tuned earlier, so that no method is tuned on its good side only.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from lur_jax.core import streams


class LogUniform(NamedTuple):
  """A continuous setting drawn log-uniformly.

  Attributes:
    low, high: the range's ends, 0 < low < high.
  """

  low: float
  high: float


class Arm(NamedTuple):
  """One tuned candidate of the verdict.

  Attributes:
    method: a name of ``METHODS``.
    fixed: settings every draw shares (e.g. ``{"mode": "first_order"}``).
    space: the drawn settings: a :class:`LogUniform` or a tuple of choices each.
    family: ``"baseline"``, ``"graddiff"``, ``"lur"`` (exact LUR), ``"ablation"``
      (first order), or ``"hybrid"`` (lur_snip: trim, then LUR; not a
      baseline of the paper).
  """

  method: str
  fixed: dict
  space: dict
  family: str


EPOCHS = (2, 5, 10, 20)
_LR = LogUniform(1e-3, 0.3)
_SMALL_LR = LogUniform(1e-4, 3e-2)  # for methods whose forget loss is unbounded or relabels
_WEIGHT = LogUniform(0.01, 3.0)  # λ of graddiff and the LUR variants, both objectives
_INNER_LR = LogUniform(0.01, 1.0)  # LUR's α
_SPARSITY = (0.9, 0.97, 0.99)

BASELINES = {
    "ft": {"lr": _LR, "epochs": EPOCHS},
    "ga": {"lr": _SMALL_LR, "epochs": EPOCHS},
    "rl": {"lr": _SMALL_LR, "epochs": EPOCHS},
    "l1_sparse": {"lr": _LR, "alpha": LogUniform(1e-5, 1e-2), "epochs": EPOCHS},
    "salun": {"lr": _SMALL_LR, "gamma": (0.1, 0.3, 0.5), "epochs": EPOCHS},
    "shs": {"lr": _LR, "forget_weight": _WEIGHT, "sparsity": _SPARSITY, "epochs": EPOCHS},
    "lur_snip": {"lr": _LR, "forget_weight": _WEIGHT, "inner_lr": _INNER_LR,
                 "sparsity": _SPARSITY, "epochs": EPOCHS},
}

# The ablation ladder, each rung with both forget objectives: GradDiff is LUR with
# α = 0; first_order keeps the lookahead's displacement but drops the Hessian term;
# exact (K = 1) and hvp (K = 2, 4) are LUR's exact gradient.
LADDER = {
    "graddiff": ("graddiff", {}),
    "lur_first_order": ("lur", {"mode": "first_order", "lookahead": "retain", "inner_steps": 1}),
    "lur": ("lur", {"mode": "exact", "lookahead": "retain", "inner_steps": 1}),
    "lur_forget": ("lur", {"mode": "exact", "lookahead": "forget", "inner_steps": 1}),
    "lur_k2": ("lur", {"mode": "hvp", "lookahead": "retain", "inner_steps": 2}),
    "lur_k4": ("lur", {"mode": "hvp", "lookahead": "retain", "inner_steps": 4}),
}
OBJECTIVES = ("ga", "rl")


def arms() -> dict[str, Arm]:
  """Every arm of the verdict.

  Returns:
    ``{name: Arm}``: the baselines, then each ladder rung with ``-ga`` and ``-rl``.
  """
  out = {name: Arm(name, {}, space, "hybrid" if name == "lur_snip" else "baseline")
         for name, space in BASELINES.items()}
  for rung, (method, fixed) in LADDER.items():
    space = {"lr": _LR, "forget_weight": _WEIGHT, "epochs": EPOCHS}
    if method == "lur":
      space["inner_lr"] = _INNER_LR
    family = {"graddiff": "graddiff", "lur_first_order": "ablation"}.get(rung, "lur")
    for objective in OBJECTIVES:
      out[f"{rung}-{objective}"] = Arm(method, {**fixed, "forget_objective": objective}, space,
                                       family)
  return out


# The class-forgetting DDPM (Adam, lr 1e-3 hand-picked): the methods that apply to
# it, the GradDiff/LUR pair with the rl objective that the DDPM study's LUR uses.
_DDPM_LR = LogUniform(1e-4, 1e-2)
_DDPM_EPOCHS = (5, 10, 20)


def ddpm_arms() -> dict[str, Arm]:
  """The arms of the DDPM verdict: ga, rl, salun, GradDiff and LUR (exact, K = 1)."""
  lur_fixed = {"mode": "exact", "lookahead": "retain", "inner_steps": 1}
  objective = {"forget_objective": "rl"}
  pair = {"lr": _DDPM_LR, "forget_weight": LogUniform(0.1, 10.0), "epochs": _DDPM_EPOCHS}
  return {
      "ga": Arm("ga", {}, {"lr": LogUniform(1e-5, 1e-3), "epochs": _DDPM_EPOCHS}, "baseline"),
      "rl": Arm("rl", {}, {"lr": _DDPM_LR, "epochs": _DDPM_EPOCHS}, "baseline"),
      "salun": Arm("salun", {}, {"lr": _DDPM_LR, "gamma": (0.3, 0.5, 0.7),
                                 "epochs": _DDPM_EPOCHS}, "baseline"),
      "graddiff-rl": Arm("graddiff", objective, pair, "graddiff"),
      "lur-rl": Arm("lur", {**lur_fixed, **objective},
                    {**pair, "inner_lr": LogUniform(1e-3, 0.1)}, "lur"),
  }


def draw(space: dict, count: int, seed: int, name: str, balanced: bool = False) -> list[dict]:
  """``count`` settings: log-uniform draws of each range, uniform picks of each
  choice, seeded by ``seed`` and the arm's ``name``.

  With ``balanced`` every combination of the choices gets an equal share of
  the ``count`` settings (shares differing by one where it does not divide),
  in a random order: each choice is tried as often as the others, and the
  arm's ensembles (one per combination) all have one width, so they share a
  compiled program.
  """
  rng = np.random.default_rng(streams.derive_seed(seed, f"verdict-{name}"))
  if not balanced:
    return [{key: _pick(r, rng) for key, r in sorted(space.items())} for _ in range(count)]
  choices = sorted(k for k, r in space.items() if not isinstance(r, LogUniform))
  combos = list(itertools.product(*(space[k] for k in choices)))
  shares = np.concatenate([np.tile(np.arange(len(combos)), count // len(combos)),
                           rng.choice(len(combos), count % len(combos), replace=False)])
  settings = []
  for c in rng.permutation(shares):
    chosen = dict(zip(choices, combos[c]))
    settings.append({key: chosen[key] if key in chosen else _pick(r, rng)
                     for key, r in sorted(space.items())})
  return settings


def _pick(r, rng: np.random.Generator):
  if isinstance(r, LogUniform):
    return float(np.exp(rng.uniform(np.log(r.low), np.log(r.high))))
  return r[int(rng.integers(len(r)))]


def continuous_keys(space: dict) -> list[str]:
  return sorted(k for k, r in space.items() if isinstance(r, LogUniform))


def describe(space: dict) -> str:
  """``lr ∈ [0.001, 0.3] (log), epochs ∈ {2, 5, 10, 20}`` for the docs and results."""
  parts = []
  for key, r in sorted(space.items()):
    if isinstance(r, LogUniform):
      parts.append(f"{key} ∈ [{r.low:g}, {r.high:g}] (log)")
    else:
      parts.append(f"{key} ∈ {{{', '.join(map(str, r))}}}")
  return ", ".join(parts)
