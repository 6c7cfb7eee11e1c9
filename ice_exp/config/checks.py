"""The config: where it lives (``CONF_DIR``) and the range checks of a composed config, before anything heavy
is imported or computed.

Keys, types and choices are the schema's (ice_exp/config/schema.py, registered on import of this module) and fail
when Hydra composes the config. What a type cannot say is checked here, by the rules of ice_exp/config/rules.py
that the classes taking the values also enforce: ranges (a ratio in [0, 1), no NaN),
cross-key rules (indices inside the pool) and files (the classifier's weights). Every check names the key
and what is allowed, and all failures are reported together. The apps call :func:`check_config` first thing
(before torch and Lightning are imported) and the build step calls it again, so that library callers of
``run()`` get the same errors. Checks that need the models (criterion regions and groups) stay with the
code that knows the allowed values; they also run before any Jacobian. docs/config_errors.md lists every
case."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ice_exp.common.celeba_attributes import CELEBA_ATTRIBUTES
from ice_exp.config import rules, schema  # noqa: F401  (schema registers the structured configs before any compose)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")  # the repo's conf/ (run from a checkout)
SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook")  # strategies whose results would stay in the workers


class ConfigError(ValueError):
    """One or more config values are out of range; the message names every key and its allowed values."""


def _problems(cfg: DictConfig) -> Iterator[str]:
    def checked(node: Any, keys: Mapping[str, rules.Rule], prefix: str) -> Iterator[str]:
        values = {key: OmegaConf.select(node, key, default="<absent>", throw_on_missing=False) for key in keys} \
            if node is not None else {}
        yield from rules.violations(keys, {k: v for k, v in values.items() if v != "<absent>"}, prefix)

    yield from checked(cfg, rules.RUN, "")
    indices, pool = cfg.get("samples", {}).get("indices"), cfg.get("samples", {}).get("pool")
    if indices is not None and isinstance(pool, int) and pool >= 1:
        if not indices or not all(isinstance(i, int) and 0 <= i < pool for i in indices):
            yield f"samples.indices: need indices within [0, {pool}) of the pool (samples.pool), got {list(indices)}"
    yield from checked(cfg.get("engine"), rules.ENGINE, "engine.")
    if cfg.get("solver") is not None:
        lowrankgan = str(cfg.solver.get("_target_")).endswith("LowRankGAN")
        yield from checked(cfg.solver, rules.LOWRANKGAN if lowrankgan else rules.SOLVER, "solver.")
    yield from _criteria_problems(cfg.get("criteria"))
    strategy = cfg.get("trainer", {}).get("strategy")
    if strategy in SPAWNING:
        yield (f"trainer.strategy: {strategy} is not supported: its workers would keep the accumulated Grams; "
               f"allowed values: ddp (one process per device, results on rank 0), auto")
    cf = cfg.get("counterfactual")
    if cf is not None and cf.get("enabled", True):
        yield from checked(cf, rules.COUNTERFACTUAL, "counterfactual.")
        yield from _classifier_problems(cfg.get("classifier"))


def _criteria_problems(criteria: Any) -> Iterator[str]:
    """Sizes of the criteria's resized masks and crops (the regions and parts are checked with the models)."""
    if criteria is None:
        return
    terms = {"activate": criteria.get("activate")}
    terms.update({f"suppress.{name}": term for name, term in (criteria.get("suppress") or {}).items()})
    for name, term in terms.items():
        criterion = (term or {}).get("criterion") or {}
        if "size" in criterion and (need := rules.integer(1, optional=True)(criterion["size"])) is not None:
            yield f"criteria.{name}.criterion.size: must be {need}, got {criterion['size']!r}"


def _classifier_problems(classifier: Any) -> Iterator[str]:
    """The CelebA classifier's weight file and attribute (toyface_attr trains its own on first use)."""
    if classifier is None or not str(classifier.get("_target_", "")).endswith("celeba_attr_resnet50"):
        return
    if classifier.get("attribute") not in CELEBA_ATTRIBUTES:
        yield f"classifier.attribute: unknown {classifier.get('attribute')!r}; allowed values: {', '.join(CELEBA_ATTRIBUTES)}"
    path = Path(str(classifier.get("path")))
    weights = path / "model_best.pth.tar" if path.is_dir() else path
    if not weights.is_file():
        yield (f"classifier.path: no weight file at {weights} (give model_best.pth.tar or the folder holding it; "
               f"train one with ice-train-celeba data_dir=<CelebA folder>)")


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every out-of-range value of the composed config."""
    problems = list(_problems(cfg))
    if problems:
        raise ConfigError("config error" + ("s" if len(problems) > 1 else "") + ":\n  " + "\n  ".join(problems))
