"""The verdict's comparisons, tables and figure."""

from __future__ import annotations

import os

import numpy as np

from lur_jax.training import checkpoint
from lur_jax.verdict import stats

BASELINE_FAMILIES = ("baseline", "graddiff")
EXTRA = ("FD_vs_retrain",)  # per-seed ratios some tasks add to an arm's final row


def _best(rows: dict, families) -> str | None:
  """The arm of ``families`` with the lowest validation Avg Gap (never the test split)."""
  found = [(r["tuning"]["chosen_val_gap"], n) for n, r in rows.items()
           if r["family"] in families and r.get("final") is not None]
  return min(found)[1] if found else None


def compare(rows: dict) -> dict:
  """The headline arms (picked on validation) and LUR's paired differences in
  test Avg Gap: to GradDiff, to the best baseline, and every rung of the
  ladder to GradDiff with the same forget objective."""
  picks = {"lur": _best(rows, ("lur",)), "graddiff": _best(rows, ("graddiff",)),
           "best_baseline": _best(rows, BASELINE_FAMILIES)}
  gap = lambda n: rows[n]["final"]["gap"]
  out = dict(picks)
  for other in ("graddiff", "best_baseline"):
    if picks["lur"] is not None and picks[other] is not None and picks[other] != picks["lur"]:
      out[f"lur_minus_{other}"] = stats.paired(gap(picks["lur"]), gap(picks[other]))
  ladder = {}
  for name, r in rows.items():
    objective = name.rsplit("-", 1)[-1]
    reference = f"graddiff-{objective}"
    if (r["family"] in ("lur", "ablation") and r.get("final") is not None
        and rows.get(reference, {}).get("final") is not None):
      ladder[name] = {"reference": reference, **stats.paired(gap(name), gap(reference))}
  out["ladder"] = ladder
  out["second_order"] = {  # what the Hessian term itself does: exact − first order
      f"lur-{o}": {"reference": f"lur_first_order-{o}",
                   **stats.paired(gap(f"lur-{o}"), gap(f"lur_first_order-{o}"))}
      for o in ("ga", "rl") if all(rows.get(n, {}).get("final") is not None
                                   for n in (f"lur-{o}", f"lur_first_order-{o}"))}
  return out


def config_sections(rows: dict, picks: dict) -> dict:
  """What to write into a config's method sections: each registry method's
  chosen arm (the headline arm for ``lur`` and ``graddiff``) and its settings."""
  chosen = {n: r for n, r in rows.items()
            if r["family"] in ("baseline", "hybrid") and r.get("final") is not None}
  for key in ("graddiff", "lur"):
    if picks.get(key) is not None:
      chosen[picks[key]] = rows[picks[key]]
  return {r["method"]: {"arm": n, **r["fixed"], **r["tuning"]["chosen"]}
          for n, r in chosen.items()}


def audit_cells(row: dict) -> dict:
  """What the verdict keeps of an audit row: U-LiRA and the NeurIPS score."""
  if "ulira" not in row:
    return {"diverged": row.get("diverged")}
  return {"ulira": row["ulira"]["balanced_accuracy"], "neurips": row["neurips"]["score"],
          "avg_gap": row["avg_gap"]}


def _cell(d, digits=2, scale=1.0) -> str:
  if d is None or d.get("value") is None:
    return "–"
  if d.get("low") is None:
    return f"{d['value'] * scale:.{digits}f}"
  return (f"{d['value'] * scale:.{digits}f} [{d['low'] * scale:.{digits}f}, "
          f"{d['high'] * scale:.{digits}f}]")


def _settings_text(chosen: dict) -> str:
  return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in sorted(chosen.items()))


def _arms_table(results: dict) -> list[str]:
  """The budget line and one row per arm: gaps, metrics, the chosen setting."""
  rows, v = results["arms"], results["verdict"]
  names = list(results.get("metrics", ("UA", "RA", "TA", "MIA")))
  extra = [k for k in EXTRA if any(k in (r.get("final") or {}) for r in rows.values())]
  diffusion = results.get("config", {}).get("task") == "diffusion"
  lines = [f"{v['settings']} settings per arm tuned on {v['tune_seeds']} seeds "
           f"({'their samples' if diffusion else 'validation split'}); the chosen setting on "
           f"{v['final_seeds']} other seeds ({'never tuned on' if diffusion else 'test split'}). "
           "Means with 95% t-intervals over seeds.", "",
           "| arm | family | working settings | val Avg Gap | test Avg Gap | diverged | "
           + " | ".join(names + extra) + " | chosen |", "|---" * (7 + len(names + extra)) + "|"]
  ref = results["reference"]["final"]
  lines.append("| retrain (reference) | | | | 0 | | " + " | ".join(
      [_cell(ref[k]) for k in names] + ["1"] * len(extra)) + " | |")
  for name, r in rows.items():
    t, f = r["tuning"], r.get("final")
    if f is None:
      lines.append(f"| {name} | {r['family']} | 0/{len(t['settings'])} | – | – |"
                   + " |" * (len(names + extra) + 2))
      continue
    lines.append(" | ".join([
        f"| {name}", r["family"], f"{t['working']}/{len(t['settings'])}",
        f"{t['chosen_val_gap']:.2f}", _cell(f["avg_gap"]), f"{f['diverged']}/{len(f['gap'])}",
        *(_cell(f[k], 1) for k in names), *(_cell(f.get(k), 3) for k in extra),
        f"{_settings_text(t['chosen'])} |"]))
  return lines


def markdown(results: dict) -> str:
  """The arms table, the headline differences, the ladder and the audit."""
  c = results["compare"]
  lines = _arms_table(results)
  lines += ["", "| comparison (test Avg Gap, paired by seed) | difference | verdict |",
            "|---|---|---|"]
  for key, label, role in (("lur_minus_graddiff", "graddiff", "GradDiff"),
                           ("lur_minus_best_baseline", "best_baseline", "best baseline")):
    if key in c:
      lines.append(f"| LUR ({c['lur']}) − {role} ({c[label]}) | {_cell(c[key])} | "
                   f"{c[key]['verdict']} |")
  for name, d in c["ladder"].items():
    lines.append(f"| ladder: {name} − {d['reference']} | {_cell(d)} | {d['verdict']} |")
  for name, d in c.get("second_order", {}).items():
    lines.append(f"| second-order term: {name} − {d['reference']} | {_cell(d)} | "
                 f"{d['verdict']} |")
  mech = results.get("mechanism")
  if mech:
    lines += ["", f"Mechanism (α = {mech['inner_lr']:.3g}, K = {mech['inner_steps']}, "
              f"{mech['objective']} objective; mean over each run's steps, interval over "
              "seeds):", "", "| arm | cos(∇L_u(θ_K), ∇L_r(θ)) | ⟨∇L_u(θ_K), ∇L_r(θ)⟩ | "
              "cos(∇L_u(θ), ∇L_r(θ)) |", "|---|---|---|---|"]
    for name, m in mech.items():
      if isinstance(m, dict):
        o = m["over_run"]
        lines.append(f"| {name} | {_cell(o['lookahead_cosine'], 3)} | "
                     f"{_cell(o['lookahead_dot'], 4)} | {_cell(o['grad_cosine'], 3)} |")
  if results.get("audit"):
    a = results["audit"]
    lines += ["", f"Audit of the chosen settings ({a['models']} runs): U-LiRA balanced "
              "accuracy (50% = indistinguishable from retraining) and the NeurIPS-2023 score.",
              "", "| model | U-LiRA % | NeurIPS score |", "|---|---|---|"]
    for name, r in a["rows"].items():
      if "ulira" in r:
        lines.append(f"| {name} | {_cell(r['ulira'], 1, 100)} | {_cell(r['neurips'], 3)} |")
      else:
        lines.append(f"| {name} | diverged | |")
    if "lur_minus_graddiff" in a:
      d = a["lur_minus_graddiff"]
      lines.append(f"\nPer-example U-LiRA accuracy, LUR − GradDiff (paired by example): "
                   f"{_cell(d, 1, 100)} points, {d['verdict']}.")
  return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
  """Test Avg Gap per arm with intervals, and the mechanism curves."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = {n: r for n, r in results["arms"].items() if r.get("final")}
  mech = results.get("mechanism")
  fig, axes = plt.subplots(1, 3 if mech else 1, figsize=(15 if mech else 6,
                                                         0.32 * len(rows) + 1.8))
  axes = np.atleast_1d(axes)
  y = np.arange(len(rows))[::-1]
  gaps = [r["final"]["avg_gap"] for r in rows.values()]
  colors = {"lur": "C3", "graddiff": "C0", "ablation": "C1", "hybrid": "C4"}
  for yi, g, r in zip(y, gaps, rows.values()):
    axes[0].errorbar(g["value"], yi, xerr=[[g["value"] - g["low"]], [g["high"] - g["value"]]],
                     fmt="o", color=colors.get(r["family"], "C7"), capsize=3)
  values = np.array([g["value"] for g in gaps])
  right = min(max(g["high"] for g in gaps), 4 * float(np.median(values)))
  for yi, g in zip(y, gaps):  # intervals past the edge are cut; the JSON has them
    if g["high"] > right:
      axes[0].annotate(f"→ {g['value']:.1f} [{g['low']:.1f}, {g['high']:.1f}]", (right, yi),
                       ha="right", va="bottom", fontsize=7)
  axes[0].set_xlim(min(0, min(g["low"] for g in gaps)), 1.05 * right)
  axes[0].set_yticks(y, list(rows))
  axes[0].set_xlabel("test Avg Gap to retrain (95% interval)")
  if mech:
    for ax, key, label in ((axes[1], "lookahead_cosine", "cos(∇L_u(θ_K), ∇L_r(θ))"),
                           (axes[2], "grad_cosine", "cos(∇L_u(θ), ∇L_r(θ))")):
      for name in (n for n in mech if isinstance(mech[n], dict)):
        curve = np.asarray(mech[name][key])
        width = max(1, len(curve) // 25)  # a moving average over 4% of the run
        ax.plot(np.convolve(curve, np.ones(width) / width, mode="valid"), label=name)
      ax.axhline(0, color="k", lw=0.5)
      ax.set_xlabel("step (moving average)")
      ax.set_title(label, fontsize=10)
      ax.legend(fontsize=8)
  fig.suptitle(results.get("title", ""), fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(out_dir: str, results: dict) -> None:
  plot(results, os.path.join(out_dir, "verdict.png"))
  checkpoint.write_atomic(os.path.join(out_dir, "verdict.md"), markdown(results))
  checkpoint.write_json(os.path.join(out_dir, "verdict.json"), results)
