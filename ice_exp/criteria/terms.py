"""The activate / suppress terms of a run, parsed from the ``criteria`` config and validated up front.

Config shape (``conf/criteria/*.yaml``)::

    name: mouth_shape
    activate: {criterion: {_target_: ice_exp.criteria.LandmarkGroup, _partial_: true, group: mouth}, part: group}
    suppress:
      other_landmarks: {criterion: {...}, part: others, ratio: 1e-2}

Terms that name the same criterion config share one criterion, so its outputs are computed once per
Jacobian pass and split into parts afterwards.

With cross-check analyzers (config ``crosscheck.parser`` / ``crosscheck.landmarker``: a second network trained
apart from the first), every criterion that reads one of them gets a twin reading it instead (``Term.twin``);
the engine then gives the term, instead of J₁ᵀJ₁, the Gram of the two readings' mean less (1 + margin) times
that of their disagreement (engine.jacobian.gram): what only one network sees, its own error, does not count
as a change, and what both see, the image's real change, does.
"""
from __future__ import annotations

import dataclasses
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
    twin: str | None = None  # key of the same criterion reading the cross-check analyzers (None: no cross-check)


@dataclass
class Terms:
    criteria: dict[str, Criterion]  # unique criteria, keyed by their config's JSON
    terms: list[Term]  # the activate term first, then the suppress terms
    margin: float = 0.0  # cross-check: disagreements a change must exceed to count (engine.jacobian.gram)

    @property
    def activate(self) -> Term:
        return self.terms[0]

    @property
    def suppress(self) -> list[Term]:
        return self.terms[1:]

    def parts_of(self, criterion: str) -> list[str]:
        """The parts of a criterion (or of a twin) that some term uses, in a fixed order."""
        return sorted({t.part for t in self.terms if criterion in (t.criterion, t.twin)})

    def outputs(self, criterion: str, frame: Frame, state: dict) -> dict[str, Tensor]:
        out = self.criteria[criterion](frame, state)
        return {p: out[p] for p in self.parts_of(criterion)}


def _check_ratio(ratio: Any, key: str) -> float:
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f"{key}: ratio must be a number in (0, 1) (eigenvalues below ratio * λ_max count as null), got {ratio!r}")
    return float(ratio)


CROSSCHECK = " read by the cross-check analyzers"  # suffix of a twin's key in Terms.criteria


def build_terms(cfg: dict[str, Any], analyzers: Analyzers, crosscheck: Analyzers | None = None, margin: float = 0.0) -> Terms:
    """Validate every term and build the criteria (with ``crosscheck``, each criterion that reads one of its
    models twice: see the module docstring); nothing is computed yet."""
    if not isinstance(margin, (int, float)) or not 0 <= margin < float("inf"):
        raise ValueError(f"crosscheck.margin: must be a finite number >= 0 (the disagreements a change must exceed), got {margin!r}")
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
        twin = _twin(criteria, crit_key, spec, analyzers, crosscheck, key)
        terms.append(Term(name=name, criterion=crit_key, part=spec["part"], ratio=ratio, twin=twin))
    return Terms(criteria=criteria, terms=terms, margin=margin)


def _twin(criteria: dict[str, Criterion], crit_key: str, spec: dict[str, Any], analyzers: Analyzers,
          crosscheck: Analyzers | None, key: str) -> str | None:
    """The key of the criterion ``crit_key`` built on the cross-check analyzers (added to ``criteria`` once);
    None when it reads none of them."""
    reads = set(type(criteria[crit_key]).needs)
    if crosscheck is None or not any(getattr(crosscheck, name) is not None for name in reads):
        return None
    if crit_key + CROSSCHECK not in criteria:
        second = Analyzers(**{f.name: getattr(crosscheck, f.name) or getattr(analyzers, f.name) for f in dataclasses.fields(Analyzers)})
        criteria[crit_key + CROSSCHECK] = build_criterion(dict(spec["criterion"]), second, key=f"{key}.criterion")
    return crit_key + CROSSCHECK
