"""What a benchmark run saw of its machine (stored with every result: figures are only comparable with it)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_flags() -> dict[str, object]:
    """What the run saw: the CPU model, the SIMD flags that decide matmul speed, cores and torch threads."""
    flags: set[str] = set()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    return {
        "cpu_model": model,
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
