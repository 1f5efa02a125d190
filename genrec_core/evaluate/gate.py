"""The quality gate: the challenger against popularity, the strongest closed-form baseline and the
champion on the held-out day D.

The champion (genrec_core/evaluate/champion.py) is the model behind the newest published
date before D; the baselines (genrec_core/evaluate/baselines.py) are EASE and ItemKNN fitted on
the same days. The evaluate stage scores all of them on D, and this module only decides.
"""

from __future__ import annotations

import numpy as np

from genrec_core.handoffs import GateDecision, Metrics


def decide(
    metric: str,
    challenger: Metrics,
    popularity: Metrics,
    champion_metrics: Metrics | None,
    champion_version: str | None,
    margin: float,
    min_users: int,
    force: bool = False,
    baselines: dict[str, Metrics] | None = None,
) -> GateDecision:
    """Pass when the new model beats popularity and is at most `margin` (relative) below both the
    strongest of `baselines` and the champion.

    `force` publishes anyway but keeps the reasons, so the run record says what was overridden.
    """
    reasons = []
    value, pop = challenger.get(metric), popularity.get(metric)
    evaluated = challenger.get("users_evaluated", 0)
    if evaluated < min_users:
        reasons.append(f"only {evaluated} users could be evaluated on the held-out day (need {min_users})")
    if value is None or not np.isfinite(value):
        reasons.append(f"the new model has no {metric}")
    elif pop is not None and value <= pop:
        reasons.append(f"the new model's {metric} {value:.4f} does not beat popularity's {pop:.4f}")
    baseline, baseline_value = _strongest(baselines or {}, metric)
    if value is not None and baseline_value is not None and value < baseline_value * (1.0 - margin):
        reasons.append(
            f"the new model's {metric} {value:.4f} is more than {margin:.0%} below the strongest baseline "
            f"{baseline}'s {baseline_value:.4f}"
        )
    best = champion_metrics.get(metric) if champion_metrics else None
    if value is not None and best is not None and value < best * (1.0 - margin):
        reasons.append(
            f"the new model's {metric} {value:.4f} is more than {margin:.0%} below the champion "
            f"{champion_version}'s {best:.4f}"
        )
    return GateDecision(
        passed=not reasons or force,
        forced=force and bool(reasons),
        reasons=reasons,
        metric=metric,
        challenger=value,
        champion=best,
        champion_version=champion_version,
        popularity=pop,
        champion_metrics=champion_metrics,
        baseline=baseline,
        baseline_value=baseline_value,
    )


def _strongest(baselines: dict[str, Metrics], metric: str) -> tuple[str | None, float | None]:
    """The baseline with the highest finite `metric` (the first in order on a tie), or (None, None)."""
    best: tuple[str | None, float | None] = (None, None)
    for name, metrics in baselines.items():
        value = metrics.get(metric)
        if value is not None and np.isfinite(value) and (best[1] is None or value > best[1]):
            best = (name, float(value))
    return best
