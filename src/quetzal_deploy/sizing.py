"""Where a step fits: Lambda or Fargate, and the smallest allowed size that held what it used.

Lambda: up to 900 s, 128-10240 MB of memory (any whole MB), 512-10240 MB of ``/tmp``.
Fargate: the CPU/memory pairs ECS accepts (``FARGATE_SIZES``, the Terraform module validates the
same list) and 21-200 GiB of ephemeral storage; no time limit of its own.
A step is sized with ``HEADROOM`` over its measured peak, so a slightly bigger scenario still fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HEADROOM = 1.2
LAMBDA_MAX_S = 900
LAMBDA_MEMORY_MB = (128, 10240)
LAMBDA_STORAGE_MB = (512, 10240)
FARGATE_STORAGE_GB = (21, 200)


def fargate_memory_choices(cpu: int) -> list[int]:
    """The memory sizes (MB) Fargate accepts with ``cpu`` units (1024 units = 1 vCPU)."""
    if cpu == 256:
        return [512, 1024, 2048]
    low, high, step = {512: (1024, 4096, 1024), 1024: (2048, 8192, 1024), 2048: (4096, 16384, 1024),
                       4096: (8192, 30720, 1024), 8192: (16384, 61440, 4096),
                       16384: (32768, 122880, 8192)}[cpu]
    return list(range(low, high + 1, step))


FARGATE_SIZES = [(cpu, memory) for cpu in (256, 512, 1024, 2048, 4096, 8192, 16384)
                 for memory in fargate_memory_choices(cpu)]


@dataclass(frozen=True)
class Suggestion:
    platform: str  # "Lambda", "Fargate", or "" when nothing fits
    text: str


def lambda_size(memory_mb: float, storage_mb: float) -> tuple[int, int] | None:
    """The smallest Lambda memory and /tmp (MB) holding the figures with headroom; None if too big."""
    memory = max(LAMBDA_MEMORY_MB[0], math.ceil(memory_mb * HEADROOM))
    storage = max(LAMBDA_STORAGE_MB[0], math.ceil(storage_mb * HEADROOM))
    if memory > LAMBDA_MEMORY_MB[1] or storage > LAMBDA_STORAGE_MB[1]:
        return None
    return memory, storage


def fargate_size(memory_mb: float, storage_mb: float) -> tuple[int, int, int] | None:
    """The smallest Fargate (cpu units, memory MB, storage GiB) holding the figures; None if too big."""
    storage = max(FARGATE_STORAGE_GB[0], math.ceil(storage_mb * HEADROOM / 1024))
    fitting = [(memory, cpu) for cpu, memory in FARGATE_SIZES if memory >= memory_mb * HEADROOM]
    if not fitting or storage > FARGATE_STORAGE_GB[1]:
        return None
    memory, cpu = min(fitting)
    return cpu, memory, storage


def suggest(seconds: float | None, memory_mb: float | None, storage_mb: float | None) -> Suggestion:
    """Lambda when the step fits its limits with headroom, else the smallest Fargate size."""
    if seconds is None or memory_mb is None or storage_mb is None:
        return Suggestion("", "-")
    on_lambda = lambda_size(memory_mb, storage_mb)
    if on_lambda and seconds * HEADROOM <= LAMBDA_MAX_S:
        return Suggestion("Lambda", f"Lambda {on_lambda[0]} MB, /tmp {on_lambda[1]} MB")
    on_fargate = fargate_size(memory_mb, storage_mb)
    if on_fargate:
        cpu, memory, storage = on_fargate
        return Suggestion("Fargate", f"Fargate {cpu / 1024:g} vCPU, {memory} MB, {storage} GiB")
    return Suggestion("", "too big for Fargate: split the step")
