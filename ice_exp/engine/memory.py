"""Batch sizes for batched Jacobian passes: chosen from free memory, halved on out-of-memory.

A batched pass (vmap over VJPs or JVPs) costs roughly ``chunk`` times the memory of one pass. On CUDA the
first item is run alone as a probe, its peak memory is measured, and the chunk is what fits in 80% of the
free memory; on CPU there is no reliable free-memory figure under contention, so a fixed default is used.
Either way an out-of-memory error halves the chunk and retries the same items, so a bad estimate costs
time, never the run. (The CUDA probe resets torch's peak-memory counter: callers that measure peaks see
the peak from the probe on, which is where the batched passes are.)
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from ice_exp.config.rules import ENGINE, enforce

log = logging.getLogger(__name__)
CPU_CHUNK = 64  # items per batched pass on CPU (memory is rarely the limit there; threads are)
MAX_CHUNK = 4096  # cap for CUDA, so that one batch never holds more than this many cotangents / tangents
FREE_SHARE = 0.8  # share of the free CUDA memory one batch may take


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure (a RuntimeError with this text)."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def in_chunks(apply: Callable[[int, int], Tensor], count: int, device: torch.device, chunk: int | None = None) -> Tensor:
    """``torch.cat([apply(i, j) for consecutive ranges [i, j) covering range(count)])``.

    ``chunk=None`` picks the size from memory (see module docstring); any chunk is halved on out-of-memory
    until one item fails alone, which re-raises."""
    enforce({"chunk": ENGINE["chunk"]}, {"chunk": chunk}, "engine.")  # null: chosen from memory
    out: list[Tensor] = []
    start = 0
    if chunk is None:
        if device.type == "cuda" and count > 1:
            first, per_item = _probe(apply, device)
            out.append(first)
            start, chunk = 1, _cuda_chunk(device, per_item)
            log.debug("batched passes: %d of %d items per chunk (the first alone took %.0f MiB)", chunk, count, per_item / 2**20)
        else:
            chunk = CPU_CHUNK
    while start < count:
        stop = min(start + chunk, count)
        try:
            out.append(apply(start, stop))
        except (RuntimeError, torch.OutOfMemoryError) as error:
            if not is_out_of_memory(error) or stop - start == 1:
                raise
            chunk = max(1, (stop - start) // 2)
            log.debug("out of memory at %d items per chunk: %d now", stop - start, chunk)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        start = stop
    return torch.cat(out)


def _probe(apply: Callable[[int, int], Tensor], device: torch.device) -> tuple[Tensor, int]:
    """Run the first item alone; returns its result and its peak extra memory in bytes."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = apply(0, 1)
    return result, max(1, torch.cuda.max_memory_allocated(device) - base)


def _cuda_chunk(device: torch.device, per_item: int) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(MAX_CHUNK, max(1, FREE_SHARE * free // per_item)))
