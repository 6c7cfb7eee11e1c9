"""toyface: the embedded synthetic face generator with known ground-truth factors (its oracle analyzers and
the truth of the tasks, which read the drawn scene, are the toyface *world*: ice_exp/world)."""
from ice_exp.generators.toyface.generator import ToyFaceGenerator

__all__ = ["ToyFaceGenerator"]
