"""The "which style flips the classifier" table: per-subspace aggregates of the per-sample measures.

Aggregation uses torchmetrics (nan-aware; never synced across processes: the explanation runs on rank 0 alone):
- ``flip_rate``: flipped / eligible (validity; nan when no sample was eligible);
- ``median_norm_flipped`` / ``median_iterations``: medians of ‖Δu‖ and of the steps to flip, flipped samples only;
- every other measure (p, Δp, pixel L1, locality, MNAC, term changes): mean over samples, nan ignored.
Rows are ranked by flip rate, then mean Δp.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torchmetrics import CatMetric, MeanMetric, SumMetric

from ice_exp.common.tables import MISSING, markdown, text

MEDIANS = {"median_norm_flipped": "norm_du", "median_iterations": "iterations_to_flip"}
COUNTED = ("eligible", "flipped")


class SubspaceSummary:
    """Aggregates of one subspace over any number of batches of per-sample measures."""

    def __init__(self) -> None:
        self.samples, self.eligible = SumMetric(sync_on_compute=False), SumMetric(sync_on_compute=False)
        self.flip_rate = MeanMetric(nan_strategy="ignore", sync_on_compute=False)
        self.medians = {key: CatMetric(nan_strategy="ignore", sync_on_compute=False) for key in MEDIANS}
        self.means: dict[str, MeanMetric] = {}

    def update(self, measures: dict[str, Tensor]) -> None:
        flipped, eligible = measures["flipped"], measures["eligible"]
        self.samples.update(torch.ones_like(flipped).sum())
        self.eligible.update(eligible.sum())
        self.flip_rate.update(flipped, weight=eligible)
        for key, source in MEDIANS.items():
            self.medians[key].update(torch.where(flipped > 0, measures[source], torch.nan))
        for key, values in measures.items():
            if key not in COUNTED:
                self.means.setdefault(key, MeanMetric(nan_strategy="ignore", sync_on_compute=False)).update(values)

    def compute(self) -> dict[str, float]:
        out = {"samples": int(self.samples.compute()), "eligible": int(self.eligible.compute()),
               "flip_rate": _value(self.flip_rate)}
        for key, metric in self.medians.items():
            values = metric.compute()
            out[key] = float(values.median()) if isinstance(values, Tensor) and values.numel() else math.nan
        out.update({key: _value(metric) for key, metric in self.means.items()})
        return out


def _value(metric: MeanMetric) -> float:
    return float(metric.compute()) if metric.update_count else math.nan


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Highest flip rate first (nan last), then highest mean Δp."""
    key = lambda r: (-(r["flip_rate"] if not math.isnan(r["flip_rate"]) else -1.0), -r.get("dp", 0.0))  # noqa: E731
    return sorted(rows, key=key)


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    """The ranked table; per-term changes (whose terms differ per run) in one column."""
    mnac = any("mnac" in r for r in rows)
    table = pd.DataFrame([{
        "#": i, "subspace": r["subspace"], "dim": r["dim"], "flip rate": r["flip_rate"],
        "eligible": f"{r['eligible']}/{r['samples']}", "p before → after": f"{text(r['p_before'])} → {text(r['p_after'])}",
        "mean Δp": r["dp"], "median ‖Δu‖ (flipped)": r["median_norm_flipped"], "median iters": r["median_iterations"],
        "pixel L1": r["pixel_l1"], "locality": r["locality"], **({"MNAC": r.get("mnac", math.nan)} if mnac else {}),
        "term changes ‖Δc_t‖": ", ".join(f"{k.removeprefix('change/')} {text(v)}" for k, v in r.items() if k.startswith("change/"))
                                or MISSING,
    } for i, r in enumerate(rows, 1)])
    return f"### {title}\n\n{markdown(table)}\n"
