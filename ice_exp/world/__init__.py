"""The toyface *world* above its generator: the oracle analyzers that read the drawn scene and the measured
truth of the tasks. It sits above the analyzers' and criteria's interfaces it implements and uses, while the
toyface generator itself stays at the bottom with the other generators."""
from ice_exp.world.oracles import OracleLandmarker, OracleParser

__all__ = ["OracleParser", "OracleLandmarker"]
