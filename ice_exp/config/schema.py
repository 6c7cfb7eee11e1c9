"""The schema of ``conf/``: Hydra structured configs, so that a wrong key, type or choice fails when the config
is composed, naming the key and the allowed values (``Invalid value 'q', expected one of [z, w, wp, s]``).

``conf/config.yaml`` lists ``config_schema`` first in its defaults, each solver file its solver's schema.
The schema types and names the keys; ranges and cross-key rules (a ratio in (0, 1), indices inside the
pool, a classifier file that exists) are checked right after composition by :mod:`ice_exp.config`.
Model-specific nodes (generator, analyzers, trainer, classifier, each criterion) are ``_target_`` configs
whose keyword arguments are checked by the class they build.

The schema is where a value's default lives: the solver, engine and search classes take their keyword
defaults from these dataclasses, the YAML default files show the same values with a comment each, and
ice_exp/config/rules.py holds the ranges (tests/test_config_defaults.py keeps the three in step).
Importing this module registers the schema; it imports neither torch nor Lightning, so a config is
checked in well under a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Choice(str, Enum):
    """A closed set of strings: compares, hashes and prints as its value (``Space.s == "s"``)."""

    def __str__(self) -> str:
        return self.value


def choice(name: str, values: str) -> type[Choice]:
    return Choice(name, {v: v for v in values.split()})  # type: ignore[return-value]


Space = choice("Space", "z w wp s")  # z, w, w+ (num_ws x w), StyleSpace (every affine output)
EngineMode = choice("EngineMode", "auto loop vjp jvp")  # JᵀJ route (ice_exp/engine/jacobian.py)
Precision = choice("Precision", "fp32 tf32 bf16")  # arithmetic of the Jacobian passes
NullSpace = choice("NullSpace", "intersection sequential")  # how the suppress terms' null spaces combine
LoggerMode = choice("LoggerMode", "auto online offline disabled")  # W&B mode (auto: online with an API key)
PeerOrder = choice("PeerOrder", "foreground gain")  # LowRankGAN's direction order
RpcaMethod = choice("RpcaMethod", "admm ialm")  # LowRankGAN's robust PCA solver
ToRGB = choice("ToRGB", "last all none")  # SeFa: the toRGB affines read
Basis = choice("Basis", "w s")  # GANSpace: the latent sampled for its PCA


@dataclass
class Samples:
    seed: int = 8  # torch seed of the latent pool
    pool: int = 32  # pool size
    indices: List[int] = field(default_factory=lambda: [0, 1])  # pool entries whose JᵀJ are accumulated
    eval_seed: int = 1234  # seed of the held-out samples
    eval_num: int = 8  # held-out samples (0 = no evaluation)


@dataclass
class Engine:
    mode: EngineMode = EngineMode.auto
    chunk: Optional[int] = None
    precision: Precision = Precision.fp32
    activate_topk: Optional[int] = None
    suppress_rank: Optional[int] = None
    oversample: int = 10
    cache_dir: Optional[str] = None


@dataclass
class Viz:
    steps: List[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    magnitude: float = 4.0
    directions: int = 5


@dataclass
class Task:
    """What one task is about (conf/task/<name>.yaml), read by the scores, the counterfactual measures,
    ice-compare and the toyface truth check: the one place that knows a task."""

    name: str = MISSING
    region: List[str] = MISSING  # parser regions the task's pixel change stays inside
    dilation: float = 0.05  # the region dilated by this fraction of the image side (past anti-aliased edges)
    moves: Optional[str] = None  # landmark group the task moves (null: none)
    others_still: bool = True  # no landmark outside `moves` may move
    colour_shift: bool = False  # the change is a uniform colour shift of the region
    truth: Optional[List[str]] = None  # toyface factors that follow this rule (docs/worlds.md)


@dataclass
class Term:
    criterion: Any = MISSING  # a _target_ config of ice_exp.criteria
    part: str = MISSING  # which of the criterion's outputs
    ratio: Optional[float] = None  # suppress terms: eigenvalues below ratio·λ_max count as null


@dataclass
class Criteria:
    name: str = MISSING  # the subspace's name (run folders, reports, W&B)
    task: Task = field(default_factory=Task)
    activate: Term = field(default_factory=Term)
    suppress: Dict[str, Term] = field(default_factory=dict)


@dataclass
class Counterfactual:
    enabled: bool = True
    iterations: int = 50
    lr: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-3
    target_class: Any = 1  # 0 / 1, or "flip"
    stop_probability: Optional[float] = None
    norm_bound: Optional[float] = None
    num_samples: int = 16
    sample_seed: int = 4321
    batch_size: Optional[int] = 16
    subspaces: Optional[List[str]] = None
    grid_samples: int = 4
    tile: int = 128


@dataclass
class WandbLogger:
    _target_: str = "ice_exp.run.tracking.wandb_logger"
    _partial_: bool = True  # the run adds its folder, name, tags and config
    project: str = "ice-exp"
    entity: Optional[str] = None
    mode: LoggerMode = LoggerMode.auto
    init_timeout: float = 10.0
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class CompareSettings:
    solvers: List[str] = MISSING
    max_directions: Optional[int] = None
    steps: List[float] = field(default_factory=lambda: [1.0])


@dataclass
class Config:
    """conf/config.yaml (ice-exp), also the base of conf/compare.yaml and conf/worlds.yaml."""

    name: str = MISSING
    space: Space = Space.s
    settings: str = "default"
    seed: int = 0
    samples: Samples = field(default_factory=Samples)
    engine: Engine = field(default_factory=Engine)
    viz: Viz = field(default_factory=Viz)
    generator: Any = MISSING
    analyzer: Any = MISSING
    crosscheck: Any = None  # second analyzers (parser, landmarker) read beside ``analyzer``: criteria.terms
    trust: Any = None  # independent analyzers (parser, landmarker) that score the answer on held-out faces
    criteria: Criteria = field(default_factory=Criteria)
    solver: Any = MISSING  # typed by the solver's own schema (below)
    logger: Any = None  # WandbLogger, or null (logger=none)
    trainer: Any = MISSING
    classifier: Any = None
    counterfactual: Counterfactual = field(default_factory=Counterfactual)
    compare: Optional[CompareSettings] = None  # ice-compare only (conf/compare.yaml)
    optimized_metric: Optional[str] = "gt/principal_angle_max_deg"


@dataclass
class Solver:
    _target_: str = MISSING
    max_directions: Optional[int] = None  # cap on the number of directions


@dataclass
class IceSolver(Solver):
    rho: float = 1e-2
    null_space: NullSpace = NullSpace.intersection
    intersection_tol: float = 1e-6


@dataclass
class ConsensusSolver(Solver):
    rho: float = 1e-4
    null_space: NullSpace = NullSpace.intersection
    intersection_tol: float = 1e-2
    vote: float = 0.5


@dataclass
class LowRankGAN(Solver):
    rpca: bool = True
    lam: float = 1 / 60
    rpca_method: RpcaMethod = RpcaMethod.admm
    num_relax: int = 0
    rho: Optional[float] = None
    null_ratio: Optional[float] = None
    min_removed: int = 1
    order: PeerOrder = PeerOrder.foreground


@dataclass
class ReSeFa(Solver):
    tau: float = 1e-3
    rho: float = 1e-2


@dataclass
class SeFa(Solver):
    layers: Optional[List[int]] = None
    torgb: ToRGB = ToRGB.last
    max_directions: Optional[int] = 10


@dataclass
class GANSpace(Solver):
    num_samples: int = 300_000
    basis: Basis = Basis.w
    layers: Optional[List[int]] = None
    max_directions: Optional[int] = 10
    seed: int = 0
    batch: int = 1000


def register() -> None:
    """Put the schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    solvers = {"ice": IceSolver, "consensus": ConsensusSolver, "lowrankgan": LowRankGAN, "resefa": ReSeFa, "sefa": SeFa,
               "ganspace": GANSpace}
    for name, node in solvers.items():
        store.store(group="solver", name=f"{name}_schema", node=node)
    store.store(group="logger", name="wandb_schema", node=WandbLogger)


register()
