"""The study: configs, running each method, results, the planner, ensembles."""

from lur_jax.study.experiment import (
  Experiment,
  Variants,
  check_out_dir,
  execute,
  markdown_table,
  prepare,
  run,
)

__all__ = ["Experiment", "Variants", "check_out_dir", "execute", "markdown_table", "prepare", "run"]
