"""Tasks, picked by ``config.task`` from ``TASKS`` (see :class:`Task`)."""

from __future__ import annotations

from lur_jax.tasks import classification, diffusion, language, tofu
from lur_jax.tasks.base import Built, Task

#: Every task by the name ``config.task`` selects.
TASKS: dict[str, Task] = {"classification": classification.TASK, "diffusion": diffusion.TASK,
                          "language": language.TASK, "tofu": tofu.TASK}


def of(config) -> Task:
  """The task a config names.

  Args:
    config: a study config; ``config.task`` ("classification" when absent).

  Returns:
    The :class:`Task` of ``TASKS``.

  Raises:
    ValueError: for a name ``TASKS`` does not hold.
  """
  name = config.get("task", "classification")
  if name not in TASKS:
    raise ValueError(f"task={name!r}; allowed: {', '.join(TASKS)}")
  return TASKS[name]


__all__ = ["TASKS", "Built", "Task", "of"]
