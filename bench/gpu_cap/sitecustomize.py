"""Caps this process's GPU memory at TITLEGEN_GPU_MEMORY_GIB (a T4 has about 15 GiB), for runs that emulate a
smaller card on a large one (bench/gpu_series.py puts this folder on the notebook kernels' PYTHONPATH)."""

import os

_cap = os.environ.get("TITLEGEN_GPU_MEMORY_GIB")
if _cap:
    import torch

    if torch.cuda.is_available():
        _total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, float(_cap) * 2**30 / _total))
