"""Criteria registry: configs name a criterion and give its keyword arguments."""
from __future__ import annotations

import inspect
from typing import Any

from ice_exp.analyzers import Analyzers
from ice_exp.criteria.base import Criterion
from ice_exp.criteria.high_frequency import HighFrequency
from ice_exp.criteria.identity import IdentityEmbedding
from ice_exp.criteria.landmarks import LandmarkGroup
from ice_exp.criteria.masked_pixels import MaskedPixels
from ice_exp.criteria.region_colour import RegionColour
from ice_exp.criteria.texture import LandmarkTexture

# name -> (class, the analyzer argument(s) it takes: attribute(s) of Analyzers, or None)
REGISTRY: dict[str, tuple[type[Criterion], str | tuple[str, ...] | None]] = {
    "masked_pixels": (MaskedPixels, "parser"),
    "landmarks": (LandmarkGroup, "landmarker"),
    "region_colour": (RegionColour, "parser"),
    "high_frequency": (HighFrequency, None),
    "identity": (IdentityEmbedding, "identity"),
    "texture": (LandmarkTexture, ("parser", "landmarker")),
}


def build_criterion(cfg: dict[str, Any], analyzers: Analyzers, key: str = "criterion") -> Criterion:
    """Build from ``{name: ..., **kwargs}``; unknown names or keys fail with the allowed values."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in REGISTRY:
        raise ValueError(f"{key}.name: unknown criterion {name!r}; allowed values: {', '.join(REGISTRY)}")
    cls, needs = REGISTRY[name]
    needs = (needs,) if isinstance(needs, str) else tuple(needs or ())
    params = [p for p in list(inspect.signature(cls.__init__).parameters)[1:] if p not in needs]
    unknown = sorted(set(cfg) - set(params))
    if unknown:
        raise ValueError(f"{key}: unknown keys {unknown} for criterion {name!r}; allowed keys: {params}")
    for analyzer in needs:
        cfg[analyzer] = analyzers.get(analyzer, key)
    return cls(**cfg)
