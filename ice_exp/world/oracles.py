"""Oracle analyzers for toyface: they read the rendered scene, behind the real analyzers' interfaces."""
from __future__ import annotations

from torch import Tensor

from ice_exp.analyzers.base import Landmarker, Parser
from ice_exp.generators.base import Frame


def _scene(frame: Frame, who: str):
    if frame.scene is None:
        raise ValueError(f"{who}: this frame has no toyface scene; oracle analyzers work with generator=toyface only")
    return frame.scene


class OracleParser(Parser):
    """19-class probabilities in BiSeNet's order: the visible share of every drawn layer (soft), whose
    argmax is the hard label map."""

    def forward(self, frame: Frame) -> Tensor:
        return _scene(frame, "OracleParser").class_probabilities()


class OracleLandmarker(Landmarker):
    """The 68 iBUG points of the drawn contours, in pixels (pixel centres at integers)."""

    def forward(self, frame: Frame) -> Tensor:
        scene = _scene(frame, "OracleLandmarker")
        return (scene.landmarks + 1) * scene.resolution / 2 - 0.5
