"""Building a run from its composed config: everything is constructed and validated here, before any
Jacobian, so that a wrong value costs seconds, not an accumulation. Shared by the apps (discover, compare,
explain)."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm, convert_inf
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor

from ice_exp.analyzers import Analyzers
from ice_exp.common.latents import latent_pool
from ice_exp.common.progress import bar_disable
from ice_exp.config import CONF_DIR, check_config
from ice_exp.counterfactual.classifiers import Classifier
from ice_exp.criteria.terms import Terms, build_terms
from ice_exp.engine.grams import SampleGrams
from ice_exp.generators.base import Generator, check_space
from ice_exp.run.artifacts import config_hash
from ice_exp.run.tracking import make_logger
from ice_exp.solvers.base import Solver

if TYPE_CHECKING:
    from wandb import Run


def instantiated(node: Any, **kwargs: Any) -> Any:
    """``node`` built (None when absent); a bad value or a bad weight file raises the model's own error, which
    names the key or the file and what is wrong, not Hydra's wrapper around it."""
    if not node:
        return None
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ValueError, OSError)):
            raise error.__cause__ from None
        raise


def build_analyzers(cfg: DictConfig) -> Analyzers:
    """The parser, landmark and identity models of ``conf/analyzer`` (each may be absent)."""
    return Analyzers(parser=instantiated(cfg.get("parser")), landmarker=instantiated(cfg.get("landmarker")),
                     identity=instantiated(cfg.get("identity")))


def build_second(cfg: DictConfig | None) -> Analyzers | None:
    """The parser and landmark model of ``crosscheck`` (criteria.terms) or of ``trust`` (the independent
    trust score), None when neither is set."""
    analyzers = build_analyzers(cfg) if cfg else None
    return analyzers if analyzers is not None and analyzers.modules() else None


def build_trust_terms(criteria: dict[str, Any], analyzers: Analyzers, trust: Analyzers | None) -> Terms | None:
    """The run's terms read by the trust analyzers (each model ``trust`` lacks: the run's own), None without them."""
    if trust is None:
        return None
    return build_terms(criteria, Analyzers(**{f.name: getattr(trust, f.name) or getattr(analyzers, f.name)
                                              for f in dataclasses.fields(Analyzers)}))


def truth_factors(cfg: DictConfig, generator: Any) -> list[str] | None:
    """The factor group to score against: the task's toyface truth (criteria.task.truth), on toyface only."""
    truth = cfg.criteria.task.get("truth") if "task" in cfg.criteria else None
    return list(truth) if truth and hasattr(generator, "true_subspace") else None


def compose_solver(name: str, overrides: list[str]) -> DictConfig:
    """conf/solver/<name>.yaml composed by Hydra with those ``solver.<key>=...`` overrides whose key this
    solver has (``solver.rho=1e-3`` applies to every solver with a rho), as a discovery run composes it."""
    def composed(extra: list[str]) -> DictConfig:
        if GlobalHydra.instance().is_initialized():
            return compose("config", overrides=[f"solver={name}", *extra]).solver
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("config", overrides=[f"solver={name}", *extra]).solver

    keys = set(composed([]))
    return composed([o for o in overrides if o.startswith("solver.") and o.split("=")[0].split(".")[1] in keys])


class NamedProgressBar(TQDMProgressBar):
    """Lightning's progress bar named after what its validation loop does here ("accumulating JᵀJ"), not
    "Validation DataLoader 0", and counting samples; like the other bars off without a terminal (a log file, a
    SLURM job) and in a parallel sweep's jobs (``progress.bar_disable``) unless ``disable`` is False."""

    def __init__(self, name: str, disable: bool | None = None) -> None:
        super().__init__()
        self.name, self.disable = name, disable  # disable None: progress.bar_disable() (tqdm's rule: a terminal only)

    @property
    def validation_description(self) -> str:
        return self.name

    def init_validation_tqdm(self) -> Tqdm:  # Lightning's, counting samples (its first draw says "it/s")
        has_main_bar = self.trainer.state.fn != "validate"
        disable = True if self.is_disabled else bar_disable() if self.disable is None else self.disable
        return Tqdm(desc=self.name, unit="sample", position=2 * self.process_position + has_main_bar, disable=disable,
                    leave=not has_main_bar, dynamic_ncols=True, file=sys.stdout, bar_format=self.BAR_FORMAT)

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        # Lightning's own sets (and draws) "<description> DataLoader <i>" here: the same without the suffix
        if not self.has_dataloader_changed(dataloader_idx):
            return
        self.val_progress_bar.reset()
        self.val_progress_bar.total = convert_inf(self.total_val_batches_current_dataloader)
        self.val_progress_bar.initial = 0
        self.val_progress_bar.set_description(self.name)


def accumulation_trainer(trainer: DictConfig) -> dict[str, Any]:
    """conf/trainer as the accumulation's Trainer options, its progress bar (when enabled) named."""
    options = OmegaConf.to_container(trainer, resolve=True)
    if options.get("enable_progress_bar", True):
        options["callbacks"] = [NamedProgressBar("accumulating JᵀJ (samples)")]
    return options


def is_rank_zero() -> bool:
    """This process is rank 0 (always, without DDP); ranks come from the launcher's environment."""
    return rank_zero_only.rank == 0


@dataclass
class Setup:
    """What a discovery run and a comparison share: the models, the terms and the samples, validated."""

    space: str
    generator: Generator
    analyzers: Analyzers
    terms: Terms
    trust_terms: Terms | None  # the terms read by the trust analyzers (config trust; None: not set)
    sample_grams: SampleGrams  # per-sample JᵀJ with the engine options and Gram cache
    z_train: Tensor  # [N, z_dim] the samples whose JᵀJ are accumulated
    z_eval: Tensor  # [M, z_dim] held-out samples (M may be 0)
    truth: list[str] | None  # the true factor group (toyface)
    weights_sha256: dict[str, str]  # the generator's and analyzers' weight files (run_info.json)


def build_setup(cfg: DictConfig) -> Setup:
    """Check the config's ranges, then build generator, analyzers, terms, engine and samples."""
    check_config(cfg)
    space = check_space(cfg.space)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    analyzers, crosscheck = build_analyzers(cfg.analyzer), build_second(cfg.get("crosscheck"))
    trust = build_second(cfg.get("trust"))
    generator = instantiated(cfg.generator)
    criteria = OmegaConf.to_container(cfg.criteria, resolve=True)
    terms = build_terms(criteria, analyzers, crosscheck, cfg.crosscheck.margin if crosscheck else 0.0)
    trust_terms = build_trust_terms(criteria, analyzers, trust)
    sample_grams = SampleGrams(generator, terms, space, **OmegaConf.to_container(cfg.engine, resolve=True))
    z_train = latent_pool(cfg.samples.seed, cfg.samples.pool, generator.z_dim)[list(cfg.samples.indices)]
    z_eval = latent_pool(cfg.samples.eval_seed, cfg.samples.eval_num, generator.z_dim)
    checksums = generator.weight_checksums()
    for model in analyzers.modules() + (crosscheck.modules() if crosscheck else []) + (trust.modules() if trust else []):
        checksums.update(getattr(model, "weight_checksums", dict)())
    return Setup(space, generator, analyzers, terms, trust_terms, sample_grams, z_train, z_eval,
                 truth_factors(cfg, generator), checksums)


@dataclass
class Discovery(Setup):
    """A built discovery run: the setup plus its solver, classifier, logger and records."""

    cfg: DictConfig
    solver: Solver
    classifier: Classifier | None  # the explained classifier (rank 0, counterfactual stage enabled)
    logger: Run | None  # the W&B run, started here (rank 0 only)
    meta: dict[str, Any]  # what subspace.safetensors records


def build(cfg: DictConfig, out_dir: Path | None) -> Discovery:
    """The setup, then the solver, the classifier and the logger; raises before any Jacobian on every wrong
    value (the toyface classifier is trained here on first use)."""
    setup = build_setup(cfg)
    solver = instantiate(cfg.solver)
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    meta = {"space": setup.space, "criteria": cfg.criteria.name, "solver": cfg.solver._target_,
            "generator": cfg.generator._target_, "world": cfg.generator.get("seed"),  # toyface's world; None elsewhere
            "config_hash": config_hash(resolved), "criteria_hash": config_hash(resolved["criteria"])[:8]}
    rank_zero, explaining = is_rank_zero(), bool(cfg.get("counterfactual") and cfg.counterfactual.enabled)
    classifier = instantiated(cfg.classifier, _convert_="all") if rank_zero and explaining else None
    tags = [f"generator:{cfg.generator._target_.split('.')[-1]}", f"space:{setup.space}", f"criteria:{cfg.criteria.name}",
            f"solver:{cfg.solver._target_.split('.')[-1]}"]
    logger = make_logger(resolved.get("logger"), out_dir or Path("."), cfg.name, tags, resolved) if rank_zero else None
    return Discovery(**vars(setup), cfg=cfg, solver=solver, classifier=classifier, logger=logger, meta=meta)
