"""A run's artifacts that need torch: the subspace file (safetensors) and what it was computed with (the
config hash, the package versions); the JSON records themselves are ice_exp.run.records."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

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


def environment() -> dict[str, Any]:
    """What a run_info.json records of the machine: the package versions and torch's CPU threads."""
    return {"versions": versions(), "torch_threads": torch.get_num_threads()}
