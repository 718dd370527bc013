"""Algorithm registry: name -> (implementation, typed config)."""

from node.algorithms.adpsgd import ADPSGD, ADPSGDConfig
from node.algorithms.adpsgd_atomic import ADPSGDAtomic, ADPSGDAtomicConfig
from node.algorithms.base import Algorithm, NodeContext, Outgoing
from node.algorithms.divshare import DivShare
from node.algorithms.dpsgd import DPSGD, DPSGDConfig
from node.algorithms.el import ELConfig, EpidemicLearning
from node.algorithms.lasgd import LASGD, LASGDConfig
from node.algorithms.local import Local, LocalConfig
from node.algorithms.relaysgd import RelaySGD, RelaySGDConfig
from node.algorithms.swift import Swift, SwiftConfig
from node.config import DivShareConfig

ALGORITHMS = {
    "divshare": (DivShare, DivShareConfig),
    "swift": (Swift, SwiftConfig),
    "adpsgd": (ADPSGD, ADPSGDConfig),
    "adpsgd_atomic": (ADPSGDAtomic, ADPSGDAtomicConfig),
    "dpsgd": (DPSGD, DPSGDConfig),
    "el": (EpidemicLearning, ELConfig),
    "local": (Local, LocalConfig),
    "lasgd": (LASGD, LASGDConfig),
    "relaysgd": (RelaySGD, RelaySGDConfig),
}

__all__ = ["ALGORITHMS", "Algorithm", "NodeContext", "Outgoing"]
