"""open-unlearning's evaluation logs (``TOFU_EVAL.json``, ``TOFU_SUMMARY.json``), written from a
results row and read back as the retain model's reference.

open-unlearning's evaluator writes, per metric, ``{"agg_value": ..., "value_by_index":
{"0": {...}, ...}}``; its forget quality reads the retain model's ``forget_truth_ratio``
scores by index and its privleak the retain model's ``mia_min_k`` ``agg_value``
(``retain_logs_path``). :func:`to_logs` writes a row under its metric names, so
open-unlearning can take a lur_jax retain model as its reference, and :func:`reference`
reads open-unlearning's logs (or ours) as the reference of a lur_jax study.
"""

from __future__ import annotations

import json

#: open-unlearning's metric name -> the results row's key.
NAMES = {
    "forget_quality": "forget_quality", "forget_Q_A_Prob": "forget_prob",
    "forget_Q_A_ROUGE": "forget_rouge", "forget_truth_ratio": "forget_truth_ratio",
    "model_utility": "model_utility", "privleak": "privleak",
    "extraction_strength": "extraction_strength",
    "retain_Q_A_Prob": "retain_prob", "retain_Q_A_ROUGE": "retain_rouge",
    "retain_Truth_Ratio": "retain_truth_ratio",
    "ra_Q_A_Prob_normalised": "real_prob", "ra_Q_A_ROUGE": "real_rouge",
    "ra_Truth_Ratio": "real_truth_ratio",
    "wf_Q_A_Prob_normalised": "world_prob", "wf_Q_A_ROUGE": "world_rouge",
    "wf_Truth_Ratio": "world_truth_ratio",
    "mia_loss": "mia_loss", "mia_zlib": "mia_zlib", "mia_min_k": "mia_min_k",
    "mia_min_k_plus_plus": "mia_min_k_pp", "mia_gradnorm": "mia_gradnorm",
    "mia_reference": "mia_reference"}


def to_logs(row: dict) -> dict:
  """A results row as open-unlearning's ``TOFU_EVAL.json`` (the metrics it has).

  Args:
    row: one model's row (after the comparisons: forget quality and privleak).

  Returns:
    ``{metric: {"agg_value": v}}``, with the forget truth ratios ``value_by_index``.
  """
  logs = {name: {"agg_value": row[key]} for name, key in NAMES.items() if key in row}
  if "forget_truth_ratios" in row:
    logs["forget_truth_ratio"]["value_by_index"] = {
        str(i): {"score": v} for i, v in enumerate(row["forget_truth_ratios"])}
  return dict(sorted(logs.items()))


def summary(logs: dict) -> dict:
  """``TOFU_SUMMARY.json``: each metric's ``agg_value``."""
  return {k: v["agg_value"] for k, v in logs.items() if v.get("agg_value") is not None}


def reference(path: str) -> dict:
  """The retain model's reference from its evaluation logs (open-unlearning's or ours).

  Args:
    path: a ``TOFU_EVAL.json``.

  Returns:
    ``{"forget_truth_ratios": [...], "mia_min_k": AUC}`` as :func:`lur_jax.tasks.tofu.compare`
    reads a retrain row (``mia_min_k`` 0.5 when the logs lack it, as open-unlearning's
    privleak then assumes).

  Raises:
    ValueError: for a file that is not such logs.
  """
  try:
    with open(path) as f:
      logs = json.load(f)
    by_index = logs["forget_truth_ratio"]["value_by_index"]
    ratios = [by_index[k]["score"] for k in sorted(by_index, key=int)]
  except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(f"tofu.retain_logs={path!r}: not TOFU evaluation logs with "
                     f"forget_truth_ratio scores by index ({type(e).__name__}: {e}); allowed: "
                     "open-unlearning's TOFU_EVAL.json") from None
  auc = (logs.get("mia_min_k") or {}).get("agg_value")
  return {"forget_truth_ratios": [float(r) for r in ratios],
          "mia_min_k": 0.5 if auc is None else float(auc), "seconds": 0.0}
