"""The activate / suppress terms of a run, parsed from the ``criteria`` config and validated up front.

Config shape (``conf/criteria/*.yaml``)::

    name: mouth_shape
    activate: {criterion: {_target_: ice_exp.criteria.LandmarkGroup, _partial_: true, group: mouth}, part: group}
    suppress:
      other_landmarks: {criterion: {...}, part: others, ratio: 1e-2}

Terms that name the same criterion config share one criterion, so its outputs are computed once per
Jacobian pass and split into parts afterwards.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ice_exp.analyzers import Analyzers
from ice_exp.criteria import build_criterion
from ice_exp.criteria.base import Criterion
from ice_exp.generators.base import Frame

ACTIVATE = "activate"


@dataclass
class Term:
    name: str  # "activate" or the suppress term's key
    criterion: str  # key of the shared criterion in Terms.criteria
    part: str
    ratio: float | None  # None for the activate term


@dataclass
class Terms:
    criteria: dict[str, Criterion]  # unique criteria, keyed by their config's JSON
    terms: list[Term]  # the activate term first, then the suppress terms

    @property
    def activate(self) -> Term:
        return self.terms[0]

    @property
    def suppress(self) -> list[Term]:
        return self.terms[1:]

    def parts_of(self, criterion: str) -> list[str]:
        """The parts of a criterion that some term uses, in a fixed order."""
        return sorted({t.part for t in self.terms if t.criterion == criterion})

    def outputs(self, criterion: str, frame: Frame, state: dict) -> dict[str, Tensor]:
        out = self.criteria[criterion](frame, state)
        return {p: out[p] for p in self.parts_of(criterion)}


def _check_ratio(ratio: Any, key: str) -> float:
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f"{key}: ratio must be a number in (0, 1) (eigenvalues below ratio * λ_max count as null), got {ratio!r}")
    return float(ratio)


def build_terms(cfg: dict[str, Any], analyzers: Analyzers) -> Terms:
    """Validate every term and build the criteria; nothing is computed yet."""
    unknown = sorted(set(cfg) - {"name", "task", "activate", "suppress"})
    if unknown:
        raise ValueError(f"criteria: unknown keys {unknown}; allowed keys: name, task, activate, suppress")
    if "activate" not in cfg or not cfg["activate"]:
        raise ValueError("criteria.activate: missing; a run needs one activate term {criterion: {...}, part: ...}")
    specs = [(ACTIVATE, cfg["activate"])] + list((cfg.get("suppress") or {}).items())
    criteria: dict[str, Criterion] = {}
    terms = []
    for name, spec in specs:
        key = "criteria.activate" if name == ACTIVATE else f"criteria.suppress.{name}"
        unknown = sorted(set(spec) - {"criterion", "part", "ratio"})
        if unknown:
            raise ValueError(f"{key}: unknown keys {unknown}; allowed keys: criterion, part, ratio")
        if "criterion" not in spec or "part" not in spec:
            raise ValueError(f"{key}: needs 'criterion' and 'part'")
        crit_key = json.dumps(dict(spec["criterion"]), sort_keys=True, default=list)
        if crit_key not in criteria:
            criteria[crit_key] = build_criterion(dict(spec["criterion"]), analyzers, key=f"{key}.criterion")
        criteria[crit_key].check_part(spec["part"], key=f"{key}.part")
        ratio = None if name == ACTIVATE else _check_ratio(spec.get("ratio"), f"{key}.ratio")
        terms.append(Term(name=name, criterion=crit_key, part=spec["part"], ratio=ratio))
    return Terms(criteria=criteria, terms=terms)
