"""The unlearning audit: scores that tell unlearned models from retrained ones.

``lur_jax.audit.run(config, out_dir)`` is ``lur-jax audit``; the parts are
the vmapped ensembles of :mod:`lur_jax.study.ensemble`, :mod:`~lur_jax.audit.ulira`
(the per-example attack), :mod:`~lur_jax.audit.forgetting_score` (the
NeurIPS-2023 score), :mod:`~lur_jax.audit.assignment` and :mod:`~lur_jax.audit.scores`.
"""

from lur_jax.audit.study import Audit, execute, markdown_table, prepare, run

__all__ = ["Audit", "execute", "markdown_table", "prepare", "run"]
