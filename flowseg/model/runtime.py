"""The network's forward pass on the CPU through ONNX Runtime.

On the CPU this project is measured on (2 cores, AVX2), ONNX Runtime runs a
:class:`~flowseg.model.net.FlowUNet` forward 1.3x faster than torch's float32 in its faster memory layout
when the machine is idle, and 2.4x faster when other work shares the cores (torch's threads suffer
more), with the same outputs to float rounding (benchmarks/RESULTS.md). It also spares the CPU path
torch's import, the slowest of all (about 2.3 s). A network is exported once (``torch.onnx``, which
needs the ``onnx`` package) and cached by a fingerprint of its weights: the bundled model's export
ships in the package beside its checkpoint, a user's checkpoint is exported at its first use into
``~/.cache/flowseg/onnx`` (``$FLOWSEG_CACHE/../onnx``). torch stays the training framework and runs
the network on CUDA, in bfloat16, or where ONNX Runtime is missing (``--runtime torch`` asks for
it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError

if TYPE_CHECKING:
    from flowseg.model.net import FlowUNet

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")
MODELS = Path(__file__).resolve().parents[1] / "models"  # flowseg/models
OPSET = 17
Runner = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
Model: TypeAlias = "FlowUNet | OnnxModel"  # what the inference path runs
# In export files' names: exports of an older layout (one output, before "pooled") are not read.
EXPORT_FORMAT = "p2"


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime is installed here (found, not imported)."""
    return importlib.util.find_spec("onnxruntime") is not None


def weights_fingerprint(net: FlowUNet) -> str:
    """Return a hex digest of the network's shape and float32 weights (its export's name)."""
    digest = hashlib.sha256(repr(net.config).encode())
    for name, value in net.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value.detach().cpu().float().numpy()).tobytes())
    return digest.hexdigest()[:20]


def export_onnx(net: FlowUNet) -> bytes:
    """Export a network in eval mode to ONNX, any batch and size, float32 in and out.

    The graph has two outputs: ``output`` (as the network's forward) and ``pooled``, its encoder's
    features averaged over the input (:meth:`FlowUNet.forward_pooled`).

    The model's metadata (thresholds, training diameter, ...), input channels, stride and weights
    fingerprint go into the file's ``flowseg`` property (JSON), so that :class:`OnnxModel` needs
    nothing else. Floating-point weights that float16 holds exactly (a checkpoint saved with
    ``half=True``) are stored as float16 and cast back when the model loads, which halves the
    file and changes no value. Batch normalisation is left to ONNX Runtime to fold into the
    convolutions.

    Parameters
    ----------
    net : FlowUNet

    Returns
    -------
    model : bytes
        A serialised ONNX model.
    """
    import onnx
    import torch
    from onnx import helper, numpy_helper

    was_training = net.training
    net = net.eval().cpu()
    sample = torch.zeros(1, net.config.in_channels, 2 * net.stride, 2 * net.stride)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # torch's TorchScript-based exporter, deprecated for torch.export's: that one needs
            # onnxscript and took 44 s against 3 s for this network here.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(_pooled_module(net), (sample,), buffer,  # type: ignore[arg-type]
                              dynamo=False, opset_version=OPSET, do_constant_folding=False,
                              input_names=["image"], output_names=["output", "pooled"],
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            "output": {0: "batch", 2: "height", 3: "width"},
                                            "pooled": {0: "batch"}})
    finally:
        net.train(was_training)
    model = onnx.load_from_string(buffer.getvalue())
    about = {"metadata": net.metadata, "in_channels": net.in_channels, "stride": net.stride,
             "fingerprint": weights_fingerprint(net)}
    onnx.helper.set_model_props(model, {"flowseg": json.dumps(about, default=str)})
    graph = model.graph
    casts = []
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype != np.float32 or not np.array_equal(value.astype(np.float16), value):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(value.astype(np.float16), f"{name}_f16"))
        casts.append(helper.make_node("Cast", [f"{name}_f16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = [*casts, *graph.node]  # nodes are kept in topological order: the casts first
    del graph.node[:]
    graph.node.extend(nodes)
    return bytes(model.SerializeToString())


def _pooled_module(net: FlowUNet) -> Any:
    """Wrap ``net`` so that its forward returns ``forward_pooled``'s pair (for the export)."""
    from torch import nn

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.forward_pooled(x)

    return Pooled()


def _cache_dir() -> Path:
    root = os.environ.get("FLOWSEG_CACHE")
    base = Path(root).parent if root else Path.home() / ".cache" / "flowseg"
    return base / "onnx"


def export_path(net: FlowUNet, *, folder: Path | None = None) -> Path:
    """Where the export of this network lives or will live: the package's models, else the cache.

    Parameters
    ----------
    net : FlowUNet
    folder : Path, optional
        Name the file in this folder instead (scripts/train_default_model.py writes the bundled
        model's export into flowseg/models).

    Returns
    -------
    path : Path
    """
    name = f"flowunet-{weights_fingerprint(net)}-{EXPORT_FORMAT}.onnx"
    if folder is not None:
        return folder / name
    shipped = MODELS / name
    return shipped if shipped.is_file() else _cache_dir() / name


def write_export(net: FlowUNet, path: Path) -> Path:
    """Export ``net`` to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(export_onnx(net))
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# One session per network object, rebuilt when its weights change (torch counts in-place updates).
_sessions: weakref.WeakKeyDictionary[FlowUNet, tuple[tuple[int, ...], Session | None]] = (
    weakref.WeakKeyDictionary())


def onnx_runner(net: FlowUNet | OnnxModel, threads: int | None = None) -> Runner | None:
    """Return a function that runs ``net`` on a ``(B, C, H, W)`` float32 batch in ONNX Runtime.

    The export is read from the package or the cache, or made and cached (a few seconds, once per
    set of weights); where the cache cannot be written it is kept in memory only.

    Parameters
    ----------
    net : FlowUNet
    threads : int, optional
        Intra-op threads; torch's thread count (which follows ``OMP_NUM_THREADS``) when omitted.

    Returns
    -------
    run : callable or None
        ``(B, C, H, W) float32 -> (B, 3, H, W) float32``; None, with a warning, where the network
        cannot be exported (a torch without its TorchScript exporter, say): run it in torch.
    """
    if isinstance(net, OnnxModel):
        return net.run
    versions = tuple(t._version for t in (*net.parameters(), *net.buffers()))
    known = _sessions.get(net)
    if known is not None and known[0] == versions:
        return known[1]
    import torch

    path = export_path(net)
    try:
        model = _exported(net, path)
    except Exception as err:  # any failure of torch.onnx: fall back to torch
        log.warning("the network could not be exported for ONNX Runtime (%s): running it in "
                    "torch", err)
        _sessions[net] = (versions, None)
        return None
    try:
        run = Session(model, threads or torch.get_num_threads())
    except Exception as err:  # a cached file cut short or overwritten: rebuilt, never trusted
        if not isinstance(model, str):
            raise
        log.warning("the cached ONNX export %s cannot be loaded (%s): rebuilding it", model,
                    str(err).splitlines()[0] if str(err) else type(err).__name__)
        Path(model).unlink(missing_ok=True)
        run = Session(_exported(net, path), threads or torch.get_num_threads())
    _sessions[net] = (versions, run)
    return run


class Session:
    """An ONNX Runtime session of an export: called on a ``(B, C, H, W)`` float32 batch.

    Parameters
    ----------
    model : bytes or str
        A serialised export, or the path of one.
    threads : int
        Intra-op threads; 0 for ONNX Runtime's default (the physical cores).
    """

    def __init__(self, model: bytes | str, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its notes on unused initializers are noise
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run a batch; ``(B, 3, H, W)`` float32 out."""
        return self.outputs(batch, "output")

    def outputs(self, batch: npt.NDArray[np.float32], name: str) -> npt.NDArray[np.float32]:
        """Run a batch; the export's output ``name`` (``output`` or ``pooled``) out."""
        feed = {"image": np.ascontiguousarray(batch, np.float32)}
        return np.asarray(self.session.run([name], feed)[0])

    def release_memory(self, in_channels: int, stride: int) -> None:
        """Give back what ONNX Runtime's arena keeps from the last runs.

        The arena holds the largest tile's activations between runs (about 600 MB for a 1024^2
        tile) so that the next tile needs no new allocation; shrinking it after every tile made a
        4096^2 image's network 40% slower. Freed once an image's tiles are done, that memory is
        there for the masks step instead of stacking under it.
        """
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        tiny = np.zeros((1, in_channels, stride, stride), np.float32)
        self.session.run(["output"], {"image": tiny}, options)


def _exported(net: FlowUNet, path: Path) -> bytes | str:
    if path.is_file():
        return str(path)
    try:
        write_export(net, path)
    except OSError as err:
        log.info("could not cache the ONNX export (%s); keeping it in memory", err)
        return export_onnx(net)
    log.info("exported the network for ONNX Runtime: %s", path)
    return str(path)


def shipped_export() -> Path | None:
    """Return the bundled model's export in the package, if there is exactly one."""
    found = sorted(MODELS.glob(f"flowunet-*-{EXPORT_FORMAT}.onnx"))
    return found[0] if len(found) == 1 else None


class OnnxModel:
    """An exported network as ONNX Runtime runs it, with its metadata; no torch needed.

    What :func:`flowseg.inference.pipeline.load_model` gives for the bundled model when the forward pass
    is to run in ONNX Runtime: it stands in for a :class:`~flowseg.model.net.FlowUNet` everywhere the
    inference path uses one (``metadata``, ``in_channels``, ``stride``, ``eval()``).

    Parameters
    ----------
    path : Path
        A file written by :func:`write_export`.
    threads : int, optional
        Intra-op threads; ``$OMP_NUM_THREADS`` or ONNX Runtime's default (the physical cores).

    Raises
    ------
    ValueError
        If the file holds no flowseg properties (not written by this module).
    """

    def __init__(self, path: Path, threads: int | None = None):
        self._session = Session(str(path), threads or int(os.environ.get("OMP_NUM_THREADS") or 0))
        props = self._session.session.get_modelmeta().custom_metadata_map
        if "flowseg" not in props:
            raise InputError(f"{path}: not a flowseg ONNX export")
        about = json.loads(props["flowseg"])
        self.path = path
        self.metadata: dict[str, Any] = about["metadata"]
        self.in_channels: int = int(about["in_channels"])
        self.stride: int = int(about["stride"])
        self.fingerprint: str = str(about["fingerprint"])

    def eval(self) -> OnnxModel:  # noqa: D102 (as torch modules have it)
        return self

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run a ``(B, C, H, W)`` float32 batch; ``(B, 3, H, W)`` float32 out."""
        return self._session(batch)

    def release_memory(self) -> None:
        """Give back what ONNX Runtime's arena keeps from the last runs (:class:`Session`)."""
        self._session.release_memory(self.in_channels, self.stride)

    def run_pooled(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run a batch; its encoder's pooled features ``(B, F)`` out (as ``forward_pooled``)."""
        return self._session.outputs(batch, "pooled")


def release_memory(net: Model) -> None:
    """Before the masks step: give back what ONNX Runtime kept from an image's tiles.

    For the bundled export, and for a network run through its export made on the fly
    (:func:`onnx_runner`); a no-op for one that torch runs. Not called between the tiles, planes
    or blocks of one job, which reuse that memory (see :meth:`Session.release_memory`).
    """
    if isinstance(net, OnnxModel):
        net.release_memory()
        return
    try:
        known = _sessions.get(net)
    except TypeError:  # not weakly referable (a stand-in): no session of ours
        return
    if known is not None and known[1] is not None:
        known[1].release_memory(net.in_channels, net.stride)


def model_fingerprint(net: FlowUNet | OnnxModel) -> str:
    """Return the weights fingerprint of a torch network or of an export (equal for the two)."""
    return net.fingerprint if isinstance(net, OnnxModel) else weights_fingerprint(net)
