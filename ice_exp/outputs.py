"""What every run writes: the subspace (safetensors), metrics.json and run_info.json (reproducibility)."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, safe_open, save_file

from ice_exp.records import write_json
from ice_exp.solvers.base import Solution

PACKAGES = ("torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core", "omegaconf", "numpy",
            "wandb", "facexlib", "face-alignment", "safetensors")



def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_subspace(path: Path, solution: Solution, meta: dict[str, Any]) -> None:
    """σ [K] and V [D, K] with string metadata (space, criteria, config hash, ...)."""
    save_file({"sigma": solution.sigma.double().contiguous().cpu(), "directions": solution.directions.double().contiguous().cpu()},
              str(path), metadata={k: json.dumps(v) for k, v in meta.items()})


def load_subspace(path: str | Path) -> tuple[Solution, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"subspace file {path} does not exist (a run writes <run dir>/subspace.safetensors)")
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return Solution(sigma=tensors["sigma"], directions=tensors["directions"]), meta


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        out["ice-exp git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                            cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["ice-exp git"] = "unknown"
    out["cuda"] = torch.version.cuda or "none"
    return out


RESULTS = ("subspace.safetensors", "metrics.json", "compare.json")  # a folder holding one of these holds a run's results


def start_record(out_dir: Path, cfg: DictConfig, config_hash: str, weights_sha256: dict[str, str]) -> None:
    """The resolved config and run_info.json (config hash, seeds, samples, versions, weight checksums),
    status ``running``: what makes a run reproducible, written before its work starts."""
    OmegaConf.save(cfg, out_dir / "config_resolved.yaml", resolve=True)
    write_json(out_dir / "run_info.json", {
        "status": "running", "config_hash": config_hash, "seed": cfg.seed,
        "samples": OmegaConf.to_container(cfg.samples, resolve=True), "versions": versions(),
        "weights_sha256": weights_sha256, "torch_threads": torch.get_num_threads()})


def claim(out_dir: Path) -> None:
    """Make ``out_dir`` this run's folder; refuse one that already holds a run's results (two runs in one
    folder would overwrite each other's files and mix their logs)."""
    found = [name for name in RESULTS if (out_dir / name).exists()]
    if found:
        raise FileExistsError(f"run folder {out_dir} already holds a run's results ({', '.join(found)}); "
                              f"choose another hydra.run.dir or remove that run")
    out_dir.mkdir(parents=True, exist_ok=True)
