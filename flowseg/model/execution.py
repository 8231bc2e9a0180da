"""How the network runs on this machine: device, precision, memory layout and runtime.

Nothing here imports torch until it is needed: on a CPU without CUDA, ``plan_execution`` picks
ONNX Runtime and ``flowseg predict`` with the bundled model never loads torch (it is the slowest
import of all, about 2.3 s of a 256^2 image's 4-5 s on the CPUs measured).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowseg.errors import InputError
from flowseg.model.device import resolve_device

if TYPE_CHECKING:
    import torch


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Execution:
    """How the network runs on one machine: where, in which precision, in which memory layout.

    Attributes
    ----------
    device : {"cpu", "cuda"}
    precision : {"float32", "bfloat16", "float16"}
        float16 and bfloat16 run under autocast; weights stay float32.
    channels_last : bool
        Activations stored NHWC, which some CPUs' convolution kernels run faster.
    runtime : {"torch", "onnxruntime"}
        What runs the forward pass (:mod:`flowseg.model.runtime`); ONNX Runtime on the CPU only.
    """

    device: str = "cpu"
    precision: str = "float32"
    channels_last: bool = False
    runtime: str = "torch"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain float32."""
        import torch

        return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(self.precision)

    def place(self, net: Any) -> Any:
        """Move a torch network to the device, in this layout (others are returned as they are)."""
        if self.runtime != "torch" or not hasattr(net, "to"):
            return net
        import torch

        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Move a ``(B, C, H, W)`` batch to the device, in this layout."""
        import torch

        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def read_cpu_model_and_flags() -> tuple[str, list[str]] | None:
    """Read the CPU's model name and feature flags, as Linux reports them in ``/proc/cpuinfo``.

    Returns
    -------
    model_and_flags : (str, list of str) or None
        None where there is no ``/proc/cpuinfo`` (not Linux).
    """
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return model, flags


def cpu_has_native_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX), from its own flags.

    Without it, torch emulates bfloat16 and runs it many times slower than float32.

    Returns
    -------
    native : bool
    """
    found = read_cpu_model_and_flags()
    if found is None:  # not Linux: trust torch's own report of AMX
        import torch

        return "AMX" in torch.backends.cpu.get_cpu_capability()
    return any(f in found[1] for f in ("avx512_bf16", "amx_bf16"))


def plan_execution(device: str = "auto", precision: str = "auto", *,
                   channels_last: bool | None = None, runtime: str = "auto") -> Execution:
    """Choose runtime, precision and layout for this machine.

    ``auto`` means float16 autocast on CUDA and float32 on the CPU; bfloat16 on the CPU is used
    only when asked for and refused where the CPU lacks native support (there it runs tens of
    times slower). Even with AMX it is not the default: measured on a 16-core AMX Xeon, its
    masks differed from float32's on some images (F1 0.963 on the worst), and at two threads it
    ran 1.8x slower than ONNX Runtime float32 (benchmarks/RESULTS.md). float32 on the CPU
    runs through ONNX Runtime where it is installed (1.3x faster than torch on an idle 2-core
    AVX2 CPU, and no torch import), else through torch in the faster of NCHW and NHWC as
    measured once on this machine and cached (:func:`faster_cpu_layout`).

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "float32", "bfloat16", "float16"}
    channels_last : bool, optional
        Force the torch layout.
    runtime : {"auto", "torch", "onnxruntime"}

    Returns
    -------
    execution : Execution

    Raises
    ------
    ValueError
        For an unknown name, CUDA without a GPU, float16 on the CPU, bfloat16 on a CPU without
        native support, or ONNX Runtime where it is missing or asked for CUDA or bfloat16.
    """
    from flowseg.model.runtime import RUNTIMES, onnxruntime_available

    where = resolve_device(device)
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime" and (where != "cpu" or precision not in ("auto", "float32")):
        raise InputError("runtime onnxruntime runs float32 on the CPU only")
    if runtime == "onnxruntime" and not onnxruntime_available():
        raise InputError("runtime onnxruntime: the onnxruntime package is not installed")
    if where == "cuda":
        chosen = "float16" if precision == "auto" else precision
        return Execution(where, chosen, bool(channels_last))
    if precision == "float16":
        raise InputError("precision float16 needs a CUDA device; use float32 or bfloat16 on the CPU")
    if precision == "bfloat16" and not cpu_has_native_bfloat16():
        raise InputError("precision bfloat16: this CPU has no native bfloat16 (AVX-512 BF16 or "
                         "AMX), where it runs many times slower than float32")
    chosen = "float32" if precision == "auto" else precision
    if chosen == "float32" and runtime != "torch" and onnxruntime_available():
        return Execution(where, chosen, runtime="onnxruntime")
    layout = faster_cpu_layout() if channels_last is None else channels_last
    return Execution(where, chosen, layout)


def faster_cpu_layout(cache: Path | None = None) -> bool:
    """Return True if NHWC runs a :class:`FlowUNet` forward faster than NCHW on this CPU.

    Measured once (about two seconds: a 512^2 forward, three times each way) and cached per CPU
    model, flags, torch version and thread count in ``cache`` (by default
    ``$FLOWSEG_CACHE/../execution.json``, i.e. ``~/.cache/flowseg/execution.json``).

    Parameters
    ----------
    cache : Path, optional

    Returns
    -------
    channels_last : bool
    """
    import json

    cache = cache or _execution_cache()
    key = _cpu_key()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), bool):
        return bool(known[key])
    choice = _measure_layout()
    known = known if isinstance(known, dict) else {}
    known[key] = choice
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, cache)
    except OSError:  # a read-only home: measure again next time
        pass
    return choice


def _execution_cache() -> Path:
    env = os.environ.get("FLOWSEG_CACHE")
    root = Path(env).parent if env else Path.home() / ".cache" / "flowseg"
    return root / "execution.json"


def _cpu_key() -> str:
    import hashlib
    import platform

    model, flags = read_cpu_model_and_flags() or (platform.processor(), [])
    import torch

    text = f"{model}|{' '.join(flags)}|{torch.__version__}|{torch.get_num_threads()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _measure_layout() -> bool:
    import time

    import torch

    from flowseg.model.net import FlowUNet

    net = FlowUNet().eval()
    x = torch.randn(1, 3, 512, 512)
    best = {}
    with torch.inference_mode():
        for nhwc in (False, True):
            layout = torch.channels_last if nhwc else torch.contiguous_format
            model = net.to(memory_format=layout)  # type: ignore[call-overload]
            batch = x.contiguous(memory_format=torch.channels_last) if nhwc else x
            model(batch)  # warm-up: one-time kernel selection
            times = []
            for _ in range(3):
                start = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - start)
            best[nhwc] = min(times)
    return best[True] < 0.9 * best[False]


def load_numba_without_scipy() -> bool:
    """Load numba's array implementations without importing scipy.linalg (a start-up cut).

    When numba first runs a compiled function it loads its numpy implementations, and one of
    them imports ``scipy.linalg`` only to learn whether BLAS is there for ``np.convolve``-like
    inner products; with scipy 1.17 that import clones numpy's namespace (numpy.f2py,
    numpy.testing) and costs 0.2-0.4 s, a tenth of ``flowseg predict`` on a small image. None
    of flowseg's kernels uses BLAS, so the module is loaded once with scipy.linalg hidden; a
    later kernel that needs BLAS (``np.dot``) still imports it when it compiles. Call it from
    the main thread at start-up, before other threads import anything.

    Returns
    -------
    bool
        True if numba's implementations were loaded this way, False if they (or scipy.linalg)
        were already loaded and nothing was done.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return False
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # its import raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg"]
    return True
