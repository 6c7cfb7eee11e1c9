"""The experiment logger: W&B that never blocks a run (online only with an API key), or none.

Runs are grouped by sweep (every job of one ``ice-exp -m`` in one W&B group) and each run's subspace is a
version of one artifact per generator, task and space, so that reruns of a task accumulate versions.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger

from ice_exp.schema import LoggerMode

MODES = tuple(m.value for m in LoggerMode)  # the schema's choices (ice_exp/schema.py)
log = logging.getLogger(__name__)


def make_logger(cfg: Any, save_dir: Path, name: str, run_tags: list[str], config: dict[str, Any],
                job_type: str = "discovery") -> Logger | None:
    """The logger of ``cfg`` (conf/logger: a ``_partial_`` ``_target_`` config, or null for none), given this
    run's folder, name, tags, config and job type (the app: discovery, compare, explain)."""
    if not cfg:
        return None
    return instantiate(cfg)(save_dir=save_dir, name=name, run_tags=run_tags, config=config, job_type=job_type)


def wandb_logger(save_dir: Path, name: str, run_tags: list[str], config: dict[str, Any], project: str = "ice-exp",
                 job_type: str = "discovery", entity: str | None = None, mode: str = "auto", init_timeout: float = 10.0,
                 group: str | None = None, tags: list[str] | tuple[str, ...] = ()) -> Logger | None:
    """W&B (conf/logger/wandb.yaml). mode=auto: online when WANDB_API_KEY is set, else offline; the WANDB_MODE
    environment variable (e.g. disabled in tests) wins over both; disabled gives no logger."""
    if mode not in MODES:
        raise ValueError(f"logger.mode: unknown {mode!r}; allowed values: {', '.join(MODES)}")
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    kwargs = dict(project=project, entity=entity, group=group or default_group(name), job_type=job_type,
                  tags=[*tags, *run_tags], name=name, save_dir=str(save_dir), config=config, log_model=False)
    if mode == "online":
        return _online_or_offline(kwargs, float(init_timeout))
    return WandbLogger(mode=mode, **kwargs)


def default_group(name: str) -> str:
    """The W&B group when ``logger.group`` is null: in a multirun the sweep folder's name
    (``hydra.sweep.dir``, e.g. ``outputs/multirun/<time>`` -> ``<time>``), else the run name."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return name


def artifact_name(meta: dict[str, Any]) -> str:
    """``subspace-<generator class>-<criteria name>-<space>`` from a subspace's meta, the same for every run of
    one task, so W&B stacks them as versions; characters W&B refuses (outside [A-Za-z0-9._-]) become '_'."""
    name = f"subspace-{meta['generator'].rsplit('.', 1)[-1]}-{meta['criteria']}-{meta['space']}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _online_or_offline(kwargs: dict[str, Any], timeout: float) -> Logger:
    """Start the online run now, within ``timeout`` s (WandbLogger starts it lazily, mid-run, where an
    unreachable server or a rejected key would kill the run); on any failure log offline instead and say
    why in one warning with the ``wandb sync`` command. ``quiet`` skips wandb's "logged in as" lookup,
    an unbounded server call before the run starts."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    try:
        logger = WandbLogger(mode="online", settings=wandb.Settings(init_timeout=timeout, quiet=True), **kwargs)
        logger.experiment  # noqa: B018 - starts the run here, bounded
        return logger
    except Exception as e:  # wandb raises CommError, AuthenticationError, UsageError, ...
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    logger = WandbLogger(mode="offline", **kwargs)
    log.warning("W&B: could not start an online run (%s; logger.init_timeout=%g s); logging offline instead, "
                "upload later with `wandb sync %s`", reason, timeout, Path(logger.experiment.dir).parent)
    return logger


def log_run(logger: Logger, out_dir: Path, metrics: dict[str, Any], meta: dict[str, Any]) -> None:
    """Scalars as metrics; with W&B also the pictures as images and the subspace as a version of
    :func:`artifact_name` (``meta``: what subspace.safetensors records, also the artifact's metadata)."""
    logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if not hasattr(logger, "log_image"):
        return
    pictures = [p for p in ("spectrum.png", "directions.png") if (out_dir / p).is_file()]
    logger.log_image("images", [str(out_dir / p) for p in pictures], caption=[p[:-4] for p in pictures])
    import wandb

    artifact = wandb.Artifact(artifact_name(meta), type="subspace", metadata=meta)
    for name in ("subspace.safetensors", "metrics.json", "config_resolved.yaml", "run_info.json"):
        if (out_dir / name).is_file():
            artifact.add_file(str(out_dir / name))
    logger.experiment.log_artifact(artifact)


def close(logger: Logger | None) -> None:
    """End the W&B run of this job, so that the next job of a sweep in the same process starts its own."""
    if logger is not None and hasattr(logger, "log_image"):
        logger.experiment.finish()
