"""The ONNX Runtime forward pass against torch's, its export cache, and when it is chosen."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from flowseg.errors import InputError
from flowseg.inference.normalize import prepare_image
from flowseg.inference.pipeline import (
    default_model_path,
    load_model,
    segment_with_outputs,
    training_diameter,
)
from flowseg.inference.tiling import TileConfig, run_tiled
from flowseg.metrics import match_labels
from flowseg.model.execution import plan_execution
from flowseg.model.net import FlowUNet, NetConfig
from flowseg.model.runtime import (
    EXPORT_FORMAT,
    MODELS,
    OnnxModel,
    Session,
    export_onnx,
    export_path,
    model_fingerprint,
    onnx_runner,
    release_memory,
    weights_fingerprint,
)
from flowseg.training.synthetic import make_sample

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWSEG_CACHE", str(tmp_path / "cache" / "targets"))


def small_net(seed: int = 0, *, half: bool = False) -> FlowUNet:
    torch.manual_seed(seed)
    net = FlowUNet(NetConfig(widths=(8, 16, 32), full_res=4)).eval()
    with torch.no_grad():
        for t in (*net.parameters(), *net.buffers()):
            if t.is_floating_point():
                t.add_(0.1 * torch.randn_like(t))  # BN statistics away from 0 and 1 too
                if half:
                    t.copy_(t.half().float())
    return net


def torch_forward(net: FlowUNet, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(batch)).numpy()


@pytest.mark.parametrize("half", [False, True])
def test_runner_matches_torch_at_any_batch_and_size(half):
    net = small_net(half=half)
    run = onnx_runner(net, threads=1)
    assert run is not None
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 64, 64), (3, 3, 96, 160)):
        batch = rng.normal(size=shape).astype(np.float32)
        np.testing.assert_allclose(run(batch), torch_forward(net, batch), atol=1e-4, rtol=1e-4)


def test_half_weights_are_stored_as_float16_and_others_not():
    import onnx
    from onnx import numpy_helper

    def dtypes(net):
        model = onnx.load_from_string(export_onnx(net))
        return {numpy_helper.to_array(i).dtype for i in model.graph.initializer
                if numpy_helper.to_array(i).dtype.kind == "f"}

    assert dtypes(small_net(half=True)) == {np.dtype(np.float16)}
    assert np.dtype(np.float32) in dtypes(small_net(half=False))


def test_export_is_cached_by_weights_and_redone_when_they_change(tmp_path):
    net = small_net()
    path = export_path(net)
    assert not path.exists()
    batch = np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32)
    run = onnx_runner(net, threads=1)
    assert run is not None
    before = run(batch)
    assert path.is_file() and path.parent == tmp_path / "cache" / "onnx"
    assert onnx_runner(net) is onnx_runner(net)  # one session per network
    with torch.no_grad():
        next(net.parameters()).mul_(2.0)  # an in-place update, as an optimizer step makes
    run = onnx_runner(net, threads=1)
    assert run is not None
    after = run(batch)
    assert export_path(net) != path and export_path(net).is_file()
    np.testing.assert_allclose(after, torch_forward(net, batch), atol=1e-4, rtol=1e-4)
    assert not np.allclose(after, before, atol=1e-3)


def test_the_bundled_model_ships_its_own_export():
    net = load_model()
    path = export_path(net)
    assert path.parent == MODELS, "run scripts/train_default_model.py --export-only"
    assert path.name == f"flowunet-{weights_fingerprint(net)}-{EXPORT_FORMAT}.onnx"
    size = default_model_path().stat().st_size + path.stat().st_size
    assert size <= 10_000_000, f"bundled model and export are {size / 1e6:.1f} MB"


def test_plan_chooses_onnxruntime_for_float32_on_the_cpu_only_when_it_can():
    assert plan_execution("cpu").runtime == "onnxruntime"
    assert plan_execution("cpu", "float32").runtime == "onnxruntime"
    assert plan_execution("cpu", runtime="torch").runtime == "torch"
    with pytest.raises(InputError, match="float32 on the CPU only"):
        plan_execution("cpu", "bfloat16", runtime="onnxruntime")
    with pytest.raises(InputError, match="unknown runtime"):
        plan_execution("cpu", runtime="tensorrt")


@pytest.mark.parametrize("flip_tta", [False, True])
def test_tiled_outputs_and_labels_agree_with_torch(flip_tta):
    net = load_model()
    image, _ = make_sample((320, 288), "nuclei", seed=3)
    prepared = prepare_image(image)
    tiles = TileConfig(tile=128, batch=2, flip_tta=flip_tta)
    fast = run_tiled(net, prepared, config=tiles, execution=plan_execution("cpu"))
    slow = run_tiled(net, prepared, config=tiles,
                     execution=plan_execution("cpu", runtime="torch", channels_last=False))
    np.testing.assert_allclose(fast, slow, atol=2e-3)
    a = segment_with_outputs(image, net, execution=plan_execution("cpu")).labels
    b = segment_with_outputs(image, net, execution=plan_execution("cpu", runtime="torch")).labels
    assert a.max() > 10
    assert match_labels(a, b).f1 >= 0.999


def test_released_arena_memory_changes_no_output():
    shipped = load_model(execution=plan_execution("cpu"))
    assert isinstance(shipped, OnnxModel)
    batch = np.random.default_rng(3).normal(size=(1, 3, 256, 256)).astype(np.float32)
    before = shipped.run(batch)
    shipped.release_memory()
    np.testing.assert_array_equal(shipped.run(batch), before)


def test_a_checkpoint_exported_on_the_fly_gives_its_arena_back_too(monkeypatch):
    net = small_net()
    calls = []
    real = Session.release_memory
    monkeypatch.setattr(Session, "release_memory",
                        lambda self, *args: calls.append(args) or real(self, *args))
    release_memory(net)  # no session yet: nothing to give back
    assert calls == []
    run = onnx_runner(net, threads=1)
    assert run is not None
    batch = np.random.default_rng(4).normal(size=(1, 3, 96, 96)).astype(np.float32)
    before = run(batch)
    release_memory(net)
    assert calls == [(net.in_channels, net.stride)]
    np.testing.assert_array_equal(run(batch), before)


def test_the_bundled_export_stands_in_for_the_checkpoint():
    net, shipped = load_model(), load_model(execution=plan_execution("cpu"))
    assert isinstance(shipped, OnnxModel)
    assert model_fingerprint(shipped) == model_fingerprint(net)
    assert (shipped.in_channels, shipped.stride) == (net.in_channels, net.stride)
    assert shipped.metadata["thresholds"] == net.metadata["thresholds"]
    assert training_diameter(shipped) == training_diameter(net)
    batch = np.random.default_rng(2).normal(size=(2, 3, 64, 96)).astype(np.float32)
    np.testing.assert_allclose(shipped.run(batch), torch_forward(net, batch), atol=1e-4)
    with torch.no_grad():
        pooled = net.forward_pooled(torch.from_numpy(batch))[1].numpy()
    np.testing.assert_allclose(shipped.run_pooled(batch), pooled, atol=1e-4)
    assert shipped.metadata.get("size_head") == net.metadata.get("size_head")
    assert load_model(execution=plan_execution("cpu", runtime="torch")).__class__ is FlowUNet


def test_cpu_predict_never_imports_torch(tmp_path):
    """Start-up: the bundled model on the CPU runs without loading torch, the slowest import,
    nor scipy.linalg (which numba would import)."""
    image, _ = make_sample((128, 128), "nuclei", seed=1)
    tifffile.imwrite(tmp_path / "a.tif", image)
    code = ("import sys\nfrom flowseg.apps.cli import main\n"
            f"code = main(['predict', '-i', {str(tmp_path / 'a.tif')!r}, '-o', "
            f"{str(tmp_path / 'out')!r}, '--device', 'cpu'])\n"
            "print(code, 'torch' in sys.modules, 'scipy.linalg' in sys.modules)")
    env = {**os.environ, "FLOWSEG_CACHE": str(tmp_path / "cache" / "targets")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    assert done.stdout.split()[-3:] == ["0", "False", "False"], done.stdout + done.stderr
    assert (tmp_path / "out" / "a_label.tiff").is_file()


def test_numba_loads_without_scipy_linalg_and_blas_still_works():
    code = """if 1:
        import sys
        import numpy as np
        from numba import njit
        from flowseg.model.execution import load_numba_without_scipy
        first = load_numba_without_scipy()
        hidden = 'scipy.linalg' not in sys.modules and 'numba.np.arraymath' in sys.modules

        @njit
        def dot(a, b):
            return np.dot(a, b)

        a = np.arange(6.0).reshape(2, 3)
        ok = np.allclose(dot(a, a.T), a @ a.T)
        import scipy.linalg
        print(first, hidden, ok, load_numba_without_scipy(), scipy.linalg.det(np.eye(2)))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["True", "True", "True", "False", "1.0"], done.stderr


def test_cpu_model_and_flags_come_from_cpuinfo(monkeypatch, tmp_path):
    # One reader of /proc/cpuinfo, used by the bfloat16 check, the layout cache key and the benchmarks.
    from flowseg.model import execution

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\n"
                       "flags\t\t: fpu sse avx2 amx_bf16\n")
    real_path = execution.Path
    monkeypatch.setattr(execution, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert execution.read_cpu_model_and_flags() == ("Test CPU 9000", ["fpu", "sse", "avx2", "amx_bf16"])
    assert execution.cpu_has_native_bfloat16()
    cpuinfo.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu sse avx2\n")
    assert not execution.cpu_has_native_bfloat16()
    cpuinfo.unlink()
    assert execution.read_cpu_model_and_flags() is None


def test_a_corrupt_cached_export_is_rebuilt_not_trusted():
    net = small_net()
    path = export_path(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an export")  # a disk that filled up, a copy cut short
    run = onnx_runner(net, threads=1)
    batch = np.random.default_rng(2).normal(size=(1, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(run(batch), torch_forward(net, batch), atol=1e-4, rtol=1e-4)
    assert path.stat().st_size > 1000  # written anew
