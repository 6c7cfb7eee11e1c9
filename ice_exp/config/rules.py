"""Value rules: what a config value must be, in one place that the up-front config check
(:mod:`ice_exp.config`) and the classes that take the value both read, so a value refused by a class is
refused before any Jacobian too. A rule maps a value to None (allowed) or to what is allowed, in words.
Light on purpose (no torch): the apps check a config before anything heavy is imported."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Rule = Callable[[Any], "str | None"]
FLIP = "flip"  # counterfactual.target_class: the other class of each sample's own prediction


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def integer(low: int | None = None, optional: bool = False) -> Rule:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low):
            return None
        return f"an integer{'' if low is None else f' >= {low}'}{' or null' if optional else ''}"
    return check


def real(low: float | None = None, high: float | None = None, open_low: bool = False, open_high: bool = True,
         optional: bool = False) -> Rule:
    """A finite number in the interval (brackets as given); NaN and inf are always refused."""
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        x = _number(value)
        ok = x is not None and math.isfinite(x)
        ok = ok and (low is None or (x > low if open_low else x >= low)) and (high is None or (x < high if open_high else x <= high))
        if ok:
            return None
        left, right = "-inf" if low is None else f"{low:g}", "inf" if high is None else f"{high:g}"
        interval = f" in {'(' if open_low else '['}{left}, {right}{')' if open_high else ']'}"
        return f"a finite number{interval if low is not None or high is not None else ''}{' or null' if optional else ''}"
    return check


def class_index_or_flip(value: Any) -> str | None:
    """counterfactual.target_class (the schema cannot type int-or-string): whether the index exists is known
    only once the classifier is built, and checked there."""
    return None if value == FLIP or integer(0)(value) is None else f"a class index >= 0 or {FLIP!r}"


def violations(rules: Mapping[str, Rule], values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """``<prefix><key>: must be <allowed>, got <value>`` for every value present in ``values`` that breaks its rule."""
    for key, rule in rules.items():
        if key in values and (need := rule(values[key])) is not None:
            yield f"{prefix}{key}: must be {need}, got {values[key]!r}"


def enforce(rules: Mapping[str, Rule], values: Mapping[str, Any], prefix: str = "") -> None:
    """Raise ValueError listing every violation (what a class calls on its own arguments)."""
    if problems := list(violations(rules, values, prefix)):
        raise ValueError("; ".join(problems))


# key -> rule, for keys of the solver configs (conf/solver/*.yaml); a solver without the key skips it
SOLVER: dict[str, Rule] = {
    "rho": real(0, 1), "null_ratio": real(0, 1, optional=True), "intersection_tol": real(0, open_low=True),
    "max_directions": integer(1, optional=True), "tau": real(0),
    "lam": real(0, open_low=True), "num_relax": integer(0), "min_removed": integer(0), "num_samples": integer(1),
    "batch": integer(1), "vote": real(0, 1, open_low=True),
}
LOWRANKGAN: dict[str, Rule] = {**SOLVER, "rho": real(0, 1, optional=True)}  # its rho null: the numerical rank
ENGINE: dict[str, Rule] = {  # conf/config.yaml: engine
    "chunk": integer(1, optional=True), "activate_topk": integer(1, optional=True),
    "suppress_rank": integer(1, optional=True), "oversample": integer(0),
}
CURVATURE = real(0)  # generator.curvature of toyface: the nonlinear part's spread relative to the linear part's
RUN: dict[str, Rule] = {
    "generator.curvature": CURVATURE, "samples.pool": integer(1),
    "samples.eval_num": integer(0), "viz.magnitude": real(0, open_low=True), "viz.directions": integer(1),
}
# conf/counterfactual: the search's own (read by counterfactual.search.SearchConfig) and the stage's
SEARCH: dict[str, Rule] = {
    "iterations": integer(0), "lr": real(0, open_low=True), "momentum": real(0, 1), "weight_decay": real(0),
    "target_class": class_index_or_flip, "stop_probability": real(0, 1, open_low=True, optional=True),
    "norm_bound": real(0, open_low=True, optional=True),
}
COUNTERFACTUAL: dict[str, Rule] = {
    **SEARCH, "num_samples": integer(1), "sample_seed": integer(), "batch_size": integer(1, optional=True),
    "grid_samples": integer(0), "tile": integer(1),
}
