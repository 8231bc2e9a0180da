"""Z-stacks: planes combined into 3-D flows, masks stitched across planes, predict --3d."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from flowseg.apps.cli import main
from flowseg.inference import volume as volume_module
from flowseg.inference.pipeline import load_model, segment
from flowseg.inference.volume import VolumeConfig, planes_to_flows, segment_volume, stitch_planes
from flowseg.io import read_labels
from flowseg.representation.flows import FLOW_SCALE
from flowseg.training.synthetic import make_sample


def test_stitch_links_planes_one_to_one() -> None:
    planes = np.zeros((4, 10, 10), np.uint32)
    planes[0, 1:5, 1:5] = 3  # one cell over planes 0-2, drifting by a pixel
    planes[1, 2:6, 1:5] = 7
    planes[2, 2:6, 2:6] = 1
    planes[1, 7:9, 7:9] = 2  # a cell of one plane
    planes[2, 8:10, 0:2] = 4  # and another, next to nothing before it
    planes[3, 2:4, 1:5] = 5  # half of the cell's last plane: IoU 8 / 16 with plane 2
    planes[3, 4:6, 1:5] = 6  # the other half: each plane-2 mask goes to one plane-3 mask only
    out = stitch_planes(planes, threshold=0.3)
    assert out[0, 2, 2] == out[1, 3, 3] == out[2, 3, 3] == 1
    assert len({out[1, 8, 8], out[2, 9, 0], out[3, 2, 2], out[3, 5, 2]} - {1}) == 3
    assert (out[3, 2, 2] == 1) != (out[3, 5, 2] == 1)  # one half kept the id, one to one
    assert np.array_equal(np.unique(out), np.arange(out.max() + 1))
    assert stitch_planes(planes, threshold=0.9)[2, 3, 3] != 1  # IoU 9 / 23 below 0.9: new id
    with pytest.raises(ValueError, match="Z, Y, X"):
        stitch_planes(planes[0])


def test_planes_are_combined_on_the_right_axes(tiny_model: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Each plane orientation answers with values that name it: (rows, cols) of its own shape.
    def fake_run(net: object, plane: np.ndarray, **_: object) -> np.ndarray:
        height, width = plane.shape[1:]
        out = np.empty((3, height, width), np.float32)
        out[0], out[1], out[2] = height, width, height * width
        return out

    monkeypatch.setattr(volume_module, "run_tiled", fake_run)
    flows, cellprob = planes_to_flows(load_model(tiny_model), np.zeros((3, 4, 5, 6), np.float32))
    # XY planes are 5 x 6, ZY 4 x 5 (dz, dy), ZX 4 x 6 (dz, dx).
    raw = np.array([(4 + 4) / 2, (5 + 5) / 2, (6 + 6) / 2])
    expected = raw / np.linalg.norm(raw) * FLOW_SCALE
    np.testing.assert_allclose(flows[:, 2, 3, 1], expected, rtol=1e-6)
    np.testing.assert_allclose(cellprob, (30 + 20 + 24) / 3)


def test_one_plane_volume_gives_the_2d_answer() -> None:
    net = load_model()  # the bundled model: it finds cells, so that equality means something
    image = np.moveaxis(make_sample((96, 88), "nuclei", seed=3)[0], -1, 0)  # (C, H, W)
    for diameter in (None, 20.0):
        expected = segment(image, net, diameter=diameter, device="cpu")
        assert expected.max() > 1
        got = segment_volume(image[None], net, diameter=diameter, device="cpu")
        np.testing.assert_array_equal(got[0], expected)


def test_volume_shapes_and_bad_input(tiny_model: Path) -> None:
    net = load_model(tiny_model)
    stack = np.random.default_rng(0).random((5, 2, 40, 48)).astype(np.float32)
    labels = segment_volume(stack, net, config=VolumeConfig(anisotropy=2.0), diameter=30,
                            device="cpu")
    assert labels.shape == (5, 40, 48) and labels.dtype == np.uint32
    assert segment_volume(stack[:, 0], net, config=VolumeConfig(stitch=0.5), diameter=30,
                          device="cpu").shape == (5, 40, 48)
    with pytest.raises(ValueError, match="must be a"):
        segment_volume(stack[0, 0], net)
    bad = stack.copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segment_volume(bad, net)
    for options in ({"anisotropy": 0.0}, {"stitch": 1.5}, {"stitch": 0.0}):
        with pytest.raises(ValueError, match="anisotropy must be"):
            VolumeConfig(**options)


def test_predict_3d_writes_a_stack(tmp_path: Path, tiny_model: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    stack = np.random.default_rng(1).integers(0, 4000, (6, 36, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in" / "stack.tif", stack, imagej=True)
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00garbage")
    common = ["predict", "-i", str(tmp_path / "in"), "--model", str(tiny_model),
              "--device", "cpu", "--diameter", "30"]
    assert main([*common, "-o", str(tmp_path / "out"), "--3d", "--anisotropy", "1.5"]) == 1
    labels = read_labels(tmp_path / "out" / "stack_label.tiff", ndim=3)
    assert labels.shape == (6, 36, 40)
    assert "broken.tif" in capsys.readouterr().out
    assert main([*common, "-o", str(tmp_path / "o2"), "--stitch", "0.5"]) == 1
    assert "add --3d" in capsys.readouterr().err
    assert main([*common, "-o", str(tmp_path / "o3"), "--3d", "--save-overlays"]) == 1
    assert "2-D images only" in capsys.readouterr().err


def test_a_rescaled_stack_takes_its_diameter_from_the_second_look(
        tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The middle plane's first pass reads clumps as 14-px cells; run at 30 / 14 it sees 9-px
    # cells, and the stack is then run for those (as run_estimated does in 2-D).
    from flowseg.inference import estimate, scaling

    seen: list[float] = []

    def middle_run(net, image, scale, tiles, config, plan, diameter):  # type: ignore[no-untyped-def]
        seen.append(diameter)
        shape = image.shape[1:]
        return scaling.Segmentation(np.zeros(shape, np.uint32), np.zeros((2, *shape), np.float32),
                                    np.zeros(shape, np.float32), diameter)

    monkeypatch.setattr(volume_module, "estimate_diameter",
                        lambda *a, **k: estimate.DiameterEstimate(14.0, 50))
    monkeypatch.setattr(volume_module, "run_at_scale", middle_run)
    monkeypatch.setattr(volume_module, "second_look", lambda *a: 9.0)
    stack = np.random.default_rng(0).random((3, 24, 24)).astype(np.float32)
    _, diameter = segment_volume(stack, load_model(tiny_model), device="cpu",
                                 return_diameter=True)
    assert seen == [14.0] and diameter == 9.0


def test_scratch_files_give_the_same_flows_in_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    # The 3-D pass in slabs over scratch files (a slab of a few planes here) gives the in-memory
    # pass's outputs bit for bit, and releasing the mapped pages loses nothing.
    from flowseg.inference.scratch import ScratchArray

    net = load_model()
    rng = np.random.default_rng(0)
    volume = rng.random((3, 6, 40, 36)).astype(np.float16)
    flows, cellprob = planes_to_flows(net, volume.copy(), execution=volume_module.plan_execution(
        "cpu"))
    monkeypatch.setattr(volume_module, "SLAB_BYTES", 3 * 4 * 3 * 40 * 36)  # 3 XY planes a slab
    scratch_in = ScratchArray(volume.shape, np.float16)
    scratch_in.array[...] = volume
    scratch_in.release()
    out = ScratchArray((4, *volume.shape[1:]), np.float32)
    got_flows, got_cellprob = planes_to_flows(net, scratch_in, out=out,
                                              execution=volume_module.plan_execution("cpu"))
    out.release()
    assert np.array_equal(got_flows, flows) and np.array_equal(got_cellprob, cellprob)


def test_scratch_array_reserves_its_space_and_names_a_full_folder(tmp_path: Path) -> None:
    from flowseg.inference.scratch import ScratchArray

    scratch = ScratchArray((4, 5), np.uint32, folder=str(tmp_path))
    scratch[1:3] = 7
    scratch.release()
    assert scratch[:, 0].tolist() == [0, 7, 7, 0] and scratch.shape == (4, 5)
    assert list(tmp_path.iterdir()) == []  # an anonymous file: nothing left behind
    with pytest.raises(ValueError, match=r"no room for .* GB of scratch space"):
        ScratchArray((1 << 40,), np.uint8, folder=str(tmp_path))  # a terabyte


def test_a_stack_resized_past_the_voxel_budget_is_refused_before_any_work(tiny_model: Path) -> None:
    # --anisotropy 100 on a 384-px stack ran past 120 s; a budget now names the cause at once.
    with pytest.raises(ValueError, match=r"anisotropy 20 and diameter 3.0 px resize this "
                                         r"40 x 64 x 64 stack to .* voxels \(at most"):
        segment_volume(np.zeros((40, 64, 64), np.uint16), load_model(tiny_model), diameter=3.0,
                       config=VolumeConfig(anisotropy=20.0))


def test_tiles_refuse_a_border_that_would_only_waste_time() -> None:
    from flowseg.inference.tiling import TileConfig

    with pytest.raises(ValueError, match=r"border=100000 \(0 to 1024\)"):
        TileConfig(border=100_000)
