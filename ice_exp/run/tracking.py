"""The experiment logger: a W&B run through wandb's own API that never blocks a run (online only with an
API key), or none.

What a dashboard user needs to compare runs: the run starts when the discovery is built and ends with it
(:func:`tracked`: exit code 1 when a stage fails or SIGTERM stops it), so every job shows with its state and
runtime; its name says what the sweep varies (``eye_shape solver=sefa seed=1``) and its group is the sweep
(the full sweep path hashed: two sweeps never merge); final values are the summary, history only where there
is a step (the directions); the subspace is a version of one artifact per generator, world, criteria, space
and solver, aliased by its settings.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ice_exp.config.schema import LoggerMode

if TYPE_CHECKING:
    from wandb import Run

MODES = tuple(m.value for m in LoggerMode)  # the schema's choices (ice_exp/config/schema.py)
PICTURES = ("spectrum", "directions")  # <name>.png of a run folder, each its own image key (sizes differ)
log = logging.getLogger(__name__)


def make_logger(cfg: Any, save_dir: Path, name: str, run_tags: list[str], config: dict[str, Any],
                job_type: str = "discovery") -> Run | None:
    """The W&B run of ``cfg`` (conf/logger: a ``_partial_`` ``_target_`` config, or null for none), given this
    run's folder, name, tags, config and job type (the app: discovery, compare, explain)."""
    if not cfg:
        return None
    return instantiate(cfg)(save_dir=save_dir, name=name, run_tags=run_tags, config=config, job_type=job_type)


def wandb_logger(save_dir: Path, name: str, run_tags: list[str], config: dict[str, Any], project: str = "ice-exp",
                 job_type: str = "discovery", entity: str | None = None, mode: str = "auto", init_timeout: float = 10.0,
                 group: str | None = None, tags: list[str] | tuple[str, ...] = ()) -> Run | None:
    """W&B (conf/logger/wandb.yaml), started now. mode=auto: online when WANDB_API_KEY is set, else offline;
    the WANDB_MODE environment variable (e.g. disabled in tests) wins over both; disabled gives no run.
    The config gets the job's command-line overrides (``overrides``) beside the resolved config."""
    if mode not in MODES:
        raise ValueError(f"logger.mode: unknown {mode!r}; allowed values: {', '.join(MODES)}")
    if mode == "auto":
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "disabled":
        return None
    import wandb

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kwargs = dict(project=project, entity=entity, group=group or default_group(name), job_type=job_type,
                  tags=[*tags, *run_tags], name=" ".join([name, *swept_overrides()]), dir=str(save_dir),
                  config={**config, "overrides": overrides})
    # quiet, silent: none of wandb's own lines (a header, a history/summary block that hides the results: the
    # run prints its own table, and close() the one line that says where the run is) and no "logged in as"
    # lookup, an unbounded server call before the run starts
    settings = dict(quiet=True, silent=True, init_timeout=float(init_timeout))
    if mode == "online":
        return _online_or_offline(kwargs, settings)
    return wandb.init(mode=mode, settings=wandb.Settings(**settings), **kwargs)


def _multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def swept_overrides() -> list[str]:
    """This job's overrides of the keys its sweep varies (``solver=sefa``, ``seed=1``); [] outside a multirun."""
    if not _multirun():
        return []
    hc = HydraConfig.get()
    return swept(list(hc.overrides.task), Path(hc.sweep.dir))


def sweep_overrides(task_overrides: list[str], sweeper_params: Any = None) -> list[str]:
    """What a sweep varies, as ``key=<values>`` texts: its command line's overrides that give a list or a range
    (``hydra.overrides.task``), then those of its config's ``hydra.sweeper.params`` (conf/worlds.yaml's) whose
    key the command line does not set (as Hydra's sweeper, the command line wins)."""
    parser = OverridesParser.create()
    task = list(zip(task_overrides, parser.parse_overrides(list(task_overrides))))
    given = {o.key_or_group for _, o in task}
    params = [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    params = [(text, o) for text, o in zip(params, parser.parse_overrides(params)) if o.key_or_group not in given]
    return [text for text, o in [*task, *params] if o.is_sweep_override()]


def varied(job_overrides: list[str], sweep: list[str]) -> list[str]:
    """Those of a job's overrides whose key the ``sweep`` (:func:`sweep_overrides`: those of its overrides
    that give a list or a range) varies."""
    parser = OverridesParser.create()
    keys = {o.key_or_group for o in parser.parse_overrides(sweep) if o.is_sweep_override()}
    return [text for text, o in zip(job_overrides, parser.parse_overrides(job_overrides)) if o.key_or_group in keys]


def swept(job_overrides: list[str], sweep_dir: Path) -> list[str]:
    """Those of a job's overrides whose key its sweep varies, on the command line or in its config's
    ``hydra.sweeper.params`` (the sweep's ``multirun.yaml``); all of them where the launcher wrote none."""
    sweep_file = sweep_dir / "multirun.yaml"
    if not sweep_file.is_file():
        return job_overrides
    sweep = OmegaConf.load(sweep_file).hydra
    return varied(job_overrides, sweep_overrides(list(sweep.overrides.task), OmegaConf.select(sweep, "sweeper.params")))


def default_group(name: str) -> str:
    """The W&B group when ``logger.group`` is null: in a multirun the sweep folder's name and a hash of its
    absolute path (``outputs/multirun/<time>`` -> ``<time>-<8 hex>``: ``/a/sweep`` and ``/b/sweep`` stay
    apart), else the run name."""
    if not _multirun():
        return name
    sweep = Path(HydraConfig.get().sweep.dir).resolve()
    return f"{sweep.name}-{hashlib.sha1(str(sweep).encode()).hexdigest()[:8]}"


def _valid(text: str) -> str:
    """Characters W&B refuses in artifact names and aliases (outside [A-Za-z0-9._-]) become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def artifact_name(meta: dict[str, Any]) -> str:
    """``subspace-<generator class>[-world<generator seed>]-<criteria name>.<criteria hash>-<space>-<solver class>``
    from a subspace's meta: reruns of one solver on one criteria config and world stack as versions, the rest
    stay apart (two criteria configs of one task, e.g. mouth_shape and mouth_shape_pixels, share their name)."""
    world = [f"world{meta['world']}"] if meta.get("world") is not None else []
    criteria = ".".join([meta["criteria"], *([meta["criteria_hash"]] if meta.get("criteria_hash") else [])])
    parts = ["subspace", meta["generator"].rsplit(".", 1)[-1], *world, criteria, meta["space"],
             meta["solver"].rsplit(".", 1)[-1]]
    return _valid("-".join(map(str, parts)))


def artifact_aliases(meta: dict[str, Any], seed: int) -> list[str]:
    """``latest`` and the version's settings: ``config-<hash>`` (fetch ``<name>:config-<hash>``) and ``seed-<seed>``."""
    return ["latest", _valid(f"config-{meta['config_hash']}"), f"seed-{seed}"]


def _online_or_offline(kwargs: dict[str, Any], settings: dict[str, Any]) -> Run:
    """Start the online run within ``init_timeout`` s; on any failure log offline instead and say why in one
    warning with the ``wandb sync`` command."""
    import wandb

    try:
        return wandb.init(mode="online", settings=wandb.Settings(**settings), **kwargs)
    except Exception as e:  # wandb raises CommError, AuthenticationError, UsageError, ...
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **kwargs)
    log.warning("W&B: could not start an online run (%s; logger.init_timeout=%g s); logging offline instead, "
                "upload later with `wandb sync %s`", reason, settings["init_timeout"], Path(run.dir).parent)
    return run


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a metrics dict (lists and the status left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def directions_rows(metrics: dict[str, Any], angles: list[float] | None) -> list[dict[str, Any]]:
    """One row per direction: σ, held-out gain, leakage into each suppress term and their activate share
    (``heldout_share``; ``independent_*`` as the trust analyzers read them), and its angle to the true
    subspace (``angles``, where the truth is known)."""
    per_direction = {k.removeprefix("eval/").removeprefix("trust/").removesuffix("_per_direction"): v
                     for k, v in metrics.items() if k.endswith("_per_direction")}
    rows = []
    for i, sigma in enumerate(metrics.get("solver/sigma", [])):
        row = {"direction": i, "sigma": sigma, **{k: v[i] for k, v in per_direction.items()}}
        rows.append(row | ({"angle_to_truth_deg": angles[i]} if angles is not None else {}))
    return rows


def log_run(run: Run, out_dir: Path, metrics: dict[str, Any], meta: dict[str, Any], seed: int,
            angles: list[float] | None = None) -> None:
    """A discovery's results: the scalars as the summary; per direction a history step (``direction/*`` over
    ``direction``) and a row of the ``directions`` table; the pictures under their own keys; the subspace as
    a version of :func:`artifact_name` (``meta``: what subspace.safetensors records, also the artifact's
    metadata) with :func:`artifact_aliases`."""
    import wandb

    run.summary.update(numeric(metrics))
    rows = directions_rows(metrics, angles)
    run.define_metric("direction", hidden=True, summary="none")
    run.define_metric("direction/*", step_metric="direction", summary="none")  # the summary has the means
    for row in rows:
        run.log({"direction": row["direction"], **{f"direction/{k}": v for k, v in row.items() if k != "direction"}})
    media: dict[str, Any] = {f"images/{p}": wandb.Image(str(out_dir / f"{p}.png"))
                             for p in PICTURES if (out_dir / f"{p}.png").is_file()}
    if rows:
        media["directions"] = wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])
    run.log(media)
    artifact = wandb.Artifact(artifact_name(meta), type="subspace", metadata=meta)
    for name in ("subspace.safetensors", "metrics.json", "config_resolved.yaml", "run_info.json"):
        if (out_dir / name).is_file():
            artifact.add_file(str(out_dir / name))
    run.log_artifact(artifact, aliases=artifact_aliases(meta, seed))


def close(run: Run | None, error: BaseException | None = None) -> None:
    """End the W&B run (so that the next job of a sweep in the same process starts its own): exit code 0, or
    1 with the error in the summary; the one way every app ends its run."""
    if run is None:
        return
    if error is not None:
        run.summary["error"] = f"{type(error).__name__}: {error}"
    where = f"offline run, upload with `wandb sync {Path(run.dir).parent}`" if run.offline else run.url
    run.finish(exit_code=0 if error is None else 1)
    log.info("W&B: %s", where)


@contextmanager
def tracked(run: Run | None) -> Iterator[Run | None]:
    """Inside, the W&B run is alive; it ends as finished, or as failed when anything (a stage's error,
    SIGTERM's Stopped, Ctrl-C) leaves the block."""
    try:
        yield run
    except BaseException as error:
        close(run, error)
        raise
    close(run)
