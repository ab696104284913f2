"""Marks that skip a test where the machine lacks what it needs."""

import pytest
import torch


def run_if(min_gpus: int = 0, bf16: bool = False) -> list[pytest.MarkDecorator]:
    """Marks that skip a test unless the machine has `min_gpus` CUDA GPUs (and bf16 on them);
    GPU tests also carry the `gpu` marker (pytest -m gpu runs only them)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    reasons = []
    if gpus < min_gpus:
        reasons.append(f"needs {min_gpus} CUDA GPU(s), found {gpus}")
    elif bf16 and not torch.cuda.is_bf16_supported():
        reasons.append("needs a GPU with bfloat16")
    marks = [pytest.mark.skipif(bool(reasons), reason="; ".join(reasons))]
    return marks + ([pytest.mark.gpu] if min_gpus else [])
