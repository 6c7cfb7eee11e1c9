"""toyface: the embedded synthetic face world with known ground truth."""
from ice_exp.generators.toyface.generator import ToyFaceGenerator
from ice_exp.generators.toyface.oracles import OracleLandmarker, OracleParser

__all__ = ["ToyFaceGenerator", "OracleParser", "OracleLandmarker"]
