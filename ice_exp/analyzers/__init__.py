"""The analyzers a run uses (parser, landmark model, identity model), built from ``conf/analyzer``."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class Analyzers:
    parser: nn.Module | None = None
    landmarker: nn.Module | None = None
    identity: nn.Module | None = None

    def get(self, name: str, key: str = "criterion") -> nn.Module:
        model = getattr(self, name)
        if model is None:
            raise ValueError(f"{key}: needs a {name} model but analyzer.{name} is not configured")
        return model

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.parser, self.landmarker, self.identity) if m is not None]
