"""Arithmetic precision of the Jacobian passes (``engine.precision``), and a measured check of its error.

- ``fp32``: IEEE float32 everywhere. PyTorch lets cuDNN convolutions use TF32 by default on Ampere and
  newer GPUs, so this mode switches that off explicitly (the seed's exact reference).
- ``tf32``: TF32 tensor cores for matmuls and convolutions (10-bit mantissa inputs, float32 sums); a no-op
  on CPU.
- ``bf16``: autocast to bfloat16 (8-bit mantissa): fastest, least exact.
Gram matrices are always summed in float64 afterwards; what changes is the error of J itself, which
``precision_error`` measures at one sample as the principal angle it causes in the significant
eigenspace (what the solvers use) next to the relative Frobenius error of JᵀJ.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from ice_exp.common.linalg import eigenspace_angle
from ice_exp.config.schema import Precision
from ice_exp.engine.jacobian import Fn, gram, jacobian

PRECISIONS = tuple(p.value for p in Precision)  # the schema's choices (ice_exp/config/schema.py)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"engine.precision: unknown {precision!r}; allowed values: {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def precision_scope(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed passes at ``precision``; the global TF32 switches are restored on exit."""
    check_precision(precision)
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "tf32" if precision == "tf32" else "ieee"
    try:
        if precision == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def precision_error(fn: Fn, u: Tensor, precision: str, ratio: float, mode: str = "auto",
                    chunk: int | None = None) -> dict[str, float]:
    """Error of ``precision`` against fp32 at one point: ``gram_rel_error`` = ‖M_p − M‖_F / ‖M‖_F and
    ``angle_deg`` = largest principal angle between the eigenspaces with λ ≥ ratio·λ_max of M_p and M
    (``dim`` / ``dim_exact``: their dimensions; a differing dimension is an error on its own)."""
    with precision_scope("fp32", u.device):
        exact = gram(jacobian(fn, u, mode, chunk))
    with precision_scope(precision, u.device):
        approx = gram(jacobian(fn, u, mode, chunk))
    angle, dim, dim_exact = eigenspace_angle(approx, exact, ratio)
    return {"gram_rel_error": float((approx - exact).norm() / exact.norm().clamp_min(1e-300)),
            "angle_deg": angle, "dim": dim, "dim_exact": dim_exact}
