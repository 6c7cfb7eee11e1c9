"""What the CPU and GPU benchmarks share: one JᵀJ engine on one criterion, timed and measured, as table rows.

Engines: ``loop`` (the seed's: one backward per output row; optionally on the first rows only, its time
extrapolated linearly and labelled so), ``vjp``, ``jvp``, ``auto`` (engine.jacobian), ``tf32`` / ``bf16``
(auto at that precision), ``randomised`` (the range sketch of engine.sketch, grown until the null space at
the case's ratio is kept). ``error`` is the largest principal angle between the eigenspace with
λ ≥ ratio·λ_max of the engine's JᵀJ and of the exact fp32 one (0 for exact engines up to rounding): the
eigenspace whose complement the solver uses as the null space.
Peak memory: CUDA max_memory_allocated above what was allocated before; CPU the rise of the process's
peak resident set (VmHWM, reset per engine through /proc/self/clear_refs) above the resident set before,
after glibc has returned its free heap pages (malloc_trim), so that memory freed by the previous engine
is not silently reused.
"""
from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ice_exp.common.linalg import eigenspace_angle
from ice_exp.engine.jacobian import Fn, gram, jacobian
from ice_exp.engine.precision import precision_scope
from ice_exp.engine.sketch import range_sketch

ENGINES = ("loop", "vjp", "jvp", "auto", "tf32", "bf16", "randomised")


@dataclass
class Case:
    name: str
    fn: Fn  # u [D] -> outputs [m]
    u: Tensor  # the latent point [D]
    ratio: float  # null threshold of the term (what the randomised engine must keep, where errors are measured)

    @property
    def rows(self) -> int:
        with torch.no_grad():
            return self.fn(self.u).numel()


def loop_rows(fn: Fn, u: Tensor, rows: int) -> float:
    """The seed's loop on the first ``rows`` output rows only (the partial J is dropped); returns the time
    of the whole loop extrapolated linearly: forward + backward time × (all rows / rows run)."""
    u = u.detach().requires_grad_(True)
    sync = torch.cuda.synchronize if u.is_cuda else (lambda: None)
    with torch.enable_grad():
        sync()
        started = time.perf_counter()
        out = fn(u)
        sync()
        forward = time.perf_counter() - started
        for i in range(rows):
            torch.autograd.grad(out[i], u, retain_graph=i < rows - 1)
        sync()
    return forward + (time.perf_counter() - started - forward) * out.numel() / rows


def run_engine(case: Case, engine: str, rank: int, oversample: int, loop_subset: int | None) -> tuple[Tensor | float, int]:
    """(JᵀJ, or for a partial loop its extrapolated seconds; passes spent)."""
    m, dim = case.rows, case.u.numel()
    if engine == "loop" and loop_subset is not None and loop_subset < m:
        return loop_rows(case.fn, case.u, loop_subset), loop_subset
    if engine == "randomised":
        sketch = range_sketch(case.fn, case.u, rank, oversample, ratio=case.ratio)
        return sketch.gram(), sketch.passes
    mode = {"loop": "loop", "vjp": "vjp", "jvp": "jvp"}.get(engine, "auto")
    with precision_scope(engine if engine in ("tf32", "bf16") else "fp32", case.u.device):
        j = jacobian(case.fn, case.u, mode)
    return gram(j), {"loop": m, "vjp": m, "jvp": dim}.get(engine, min(m, dim))


def measure(call: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """(result, seconds, peak extra memory in MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _trim_heap()
        base = _resident_kib("VmRSS")
        _reset_peak()
    started = time.perf_counter()
    result = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else (_resident_kib("VmHWM") - base) / 1024
    return result, seconds, peak


def bench(case: Case, engines: list[str], rank: int = 32, oversample: int = 10, loop_subset: int | None = None) -> list[dict[str, Any]]:
    """One row per engine, measured one after the other in this process; speed-up is loop time / time."""
    with torch.no_grad():
        case.fn(case.u)  # warm-up
    rows, grams, notes = [], [], []
    for engine in engines:
        (g, passes), seconds, peak = measure(lambda: run_engine(case, engine, rank, oversample, loop_subset), case.u.device)
        partial = isinstance(g, float)
        notes.append(f"loop on {passes} of {case.rows} rows, time extrapolated linearly" if partial else "")
        if partial:
            g, seconds, passes = None, g, case.rows
        rows.append({"case": case.name, "engine": engine, "passes": passes, "seconds": seconds,
                     "passes_per_s": passes / seconds, "peak_mib": peak})
        grams.append(g)
    reference = next((g for g, r in zip(grams, rows) if g is not None and r["engine"] in ("loop", "vjp", "jvp", "auto")), None)
    loop = next((r["seconds"] for r in rows if r["engine"] == "loop"), None)
    for row, g, note in zip(rows, grams, notes):
        row["speedup_vs_loop"] = loop / row["seconds"] if loop else float("nan")
        row["error_deg"] = eigenspace_angle(g, reference, case.ratio)[0] if g is not None and reference is not None else float("nan")
        row["note"] = note
    return rows


def markdown(rows: list[dict[str, Any]], header: str = "") -> str:
    """Rows as a markdown table, columns in order of first appearance (``note`` last), under ``header``."""
    columns = [k for k in dict.fromkeys(k for r in rows for k in r) if k != "note"]
    columns += ["note"] * any("note" in r for r in rows)
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return (header + "\n\n" if header else "") + "\n".join(lines)


def _resident_kib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(float(line.split()[1]) for line in f if line.startswith(field + ":"))


def _trim_heap() -> None:
    """Return glibc's free heap pages to the system (a no-op without glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> None:
    """Reset VmHWM to the current resident set (Linux >= 4.0); harmless where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
