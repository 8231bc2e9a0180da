"""Which device the network runs on: CUDA where torch can use it, else the CPU.

The lowest module of the model layer: the network (``net``) and the execution plan
(``execution``) both ask it, so neither imports the other for it. torch is imported only where
an NVIDIA driver is present.
"""

from __future__ import annotations

import os

from flowseg.errors import InputError


def cuda_available() -> bool:
    """Whether torch can use a CUDA device; torch is not imported where no NVIDIA driver is.

    Returns
    -------
    available : bool
    """
    driver = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl",
              "/usr/lib/wsl/lib/libcuda.so")
    if not any(os.path.exists(p) for p in driver):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str = "auto") -> str:
    """Resolve ``auto`` to CUDA when available, else the CPU.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"}

    Returns
    -------
    device : {"cpu", "cuda"}

    Raises
    ------
    ValueError
        If CUDA is asked for and not available, or the name is unknown.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {name!r}; expected auto, cpu or cuda")
    if name == "cuda" and not cuda_available():
        raise InputError("device cuda: no CUDA device is available")
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    return name
