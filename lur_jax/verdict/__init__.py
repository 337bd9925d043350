"""The verdict: does LUR's lookahead help? Equal-budget tuning of every method
and of an ablation ladder (vmapped sweeps), final numbers over many seeds,
paired differences to GradDiff with intervals, and the mechanism.

``lur_jax.verdict.run(config, out_dir)`` runs one forgetting setting;
``benchmarks/verdict.py`` runs the settings of docs/verdict.md.
"""

from lur_jax.verdict.space import Arm, LogUniform, arms
from lur_jax.verdict.study import DEFAULTS, DRAWS, run

__all__ = ["Arm", "DEFAULTS", "DRAWS", "LogUniform", "arms", "run"]
