"""Criteria: configs build them by ``_target_`` (``ice_exp.criteria.<Class>``); a criterion that reads an
analyzer is a ``_partial_`` config and gets the run's analyzers it names in ``needs``."""
from __future__ import annotations

import functools
import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate

from ice_exp.analyzers import Analyzers
from ice_exp.criteria.base import Criterion
from ice_exp.criteria.high_frequency import HighFrequency
from ice_exp.criteria.identity import IdentityEmbedding
from ice_exp.criteria.landmarks import LandmarkGroup
from ice_exp.criteria.masked_pixels import MaskedPixels
from ice_exp.criteria.region_colour import RegionColour
from ice_exp.criteria.texture import LandmarkTexture

__all__ = ["Criterion", "HighFrequency", "IdentityEmbedding", "LandmarkGroup", "LandmarkTexture", "MaskedPixels",
           "RegionColour", "build_criterion"]


def build_criterion(cfg: dict[str, Any], analyzers: Analyzers, key: str = "criterion") -> Criterion:
    """Instantiate ``cfg`` and hand it the analyzers it needs; every failure names ``key`` and what is allowed."""
    allowed = ", ".join(f"ice_exp.criteria.{name}" for name in __all__[1:-1])
    target = cfg.get("_target_")
    try:
        cls = get_object(str(target))
    except Exception as error:
        raise ValueError(f"{key}._target_: cannot import {target!r}; allowed values: {allowed}") from error
    if not (isinstance(cls, type) and issubclass(cls, Criterion)):
        raise ValueError(f"{key}._target_: {target!r} is not a criterion; allowed values: {allowed}")
    try:
        made = instantiate(cfg)
        return made(**{name: analyzers.get(name, key) for name in cls.needs}) if isinstance(made, functools.partial) else made
    except (InstantiationException, TypeError) as error:
        keys = [p for p in list(inspect.signature(cls.__init__).parameters)[1:] if p not in cls.needs]
        raise ValueError(f"{key}: {error}; allowed keys: {', '.join(keys)}") from error
