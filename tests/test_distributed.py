from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed", reason="the dask extra is not installed")
import dask.array as da
import zarr
from distributed import Client

from flowseg.apps.cluster import local_cluster, worker_env
from flowseg.apps.distributed import predict_with_dask
from flowseg.apps.predict import predict_folder
from flowseg.apps.slides import BlockConfig, open_image, segment_large
from flowseg.inference.blocks import core_grid
from flowseg.inference.pipeline import load_model, segment, training_diameter
from flowseg.io import read_labels, read_pixels
from flowseg.metrics import match_labels
from flowseg.training.synthetic import make_sample


@pytest.fixture(scope="module")
def client() -> Client:
    with local_cluster(2) as cluster, Client(cluster) as c:
        yield c


@pytest.mark.slow
def test_blocks_agree_with_one_process_and_split_no_cell(tmp_path: Path, client: Client) -> None:
    image, truth = make_sample((2048, 2048), "fluorescence", seed=21)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    out = segment_large(path, tmp_path / "big.zarr", client=client,
                        blocks=BlockConfig(block=512, margin=96), device="cpu",
                        tiff=tmp_path / "big_label.tiff")
    blocked = np.asarray(zarr.open_array(str(out), mode="r")[:])
    # Blocks run at the image's own scale: so does the single process (the model's diameter).
    net = load_model()
    single = segment(read_pixels(path), net, device="cpu", diameter=training_diameter(net),
                     channel_axis=0)
    agreement = match_labels(single, blocked)
    print(f"blocked vs single process: F1 {agreement.f1:.4f}, {blocked.max()} cells")
    assert agreement.f1 >= 0.99
    assert np.array_equal(read_labels(tmp_path / "big_label.tiff"), blocked)
    borders = np.zeros(truth.shape, bool)
    for b in (512, 1024, 1536):
        borders[b - 1 : b + 1, :] = True
        borders[:, b - 1 : b + 1] = True

    def split(pred: np.ndarray) -> set[int]:
        """True cells on a block border covered by two or more masks of >= 25% each."""
        found = set()
        for cell in np.unique(truth[borders])[1:]:
            ids, counts = np.unique(pred[truth == cell], return_counts=True)
            if (counts[ids > 0] >= 0.25 * (truth == cell).sum()).sum() >= 2:
                found.add(int(cell))
        return found

    # The model splits a few synthetic cells wherever they lie (8 of those on borders here, in
    # both runs); blocks must add none.
    assert split(blocked) - split(single) == set()


def test_folder_mode_writes_what_predict_writes(tmp_path: Path, client: Client) -> None:
    (tmp_path / "in").mkdir()
    for i in range(3):
        image, _ = make_sample((160, 200), "tissue", seed=i)
        tifffile.imwrite(tmp_path / "in" / f"t{i}.tif", image)
    (tmp_path / "in" / "bad.png").write_bytes(b"broken")
    report = predict_with_dask(tmp_path / "in", tmp_path / "dask", client=client, device="cpu")
    predict_folder(tmp_path / "in", tmp_path / "single", device="cpu")
    assert sorted(report["written"]) == ["t0.tif", "t1.tif", "t2.tif"]
    assert len(report["failed"]) == 1 and report["failed"][0].startswith("bad.png: ")
    for i in range(3):
        name = f"t{i}_label.tiff"
        assert np.array_equal(read_labels(tmp_path / "dask" / name),
                              read_labels(tmp_path / "single" / name))


def _explode(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    if block_info and block_info[None]["chunk-location"] == (0, 1, 1):
        raise OSError("disk read failed")
    return block


def test_a_failing_block_stops_the_run_and_is_named(tmp_path: Path, client: Client) -> None:
    image, _ = make_sample((300, 300), "nuclei", seed=0)  # gray 8-bit
    lazy = da.from_array(image[None], chunks=(1, 150, 150)).map_blocks(_explode, dtype=image.dtype)
    with pytest.raises(RuntimeError, match=r"block rows .* failed after its retries: OSError"):
        # (a diameter given: the automatic one would read the bad chunk here, in the client)
        segment_large(lazy, tmp_path / "x.zarr", client=client, device="cpu", diameter=30,
                      blocks=BlockConfig(block=128, margin=32, retries=1), ranges=[[0, 255]])


def test_open_image_and_grid(tmp_path: Path) -> None:
    with open_image(np.zeros((40, 50, 3), np.uint8)) as image:
        assert image.shape == (3, 40, 50)
    with open_image(np.zeros((40, 50))) as image:
        assert image.shape == (1, 40, 50)
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 30, 20), np.uint16), photometric="minisblack")
    with open_image(tmp_path / "a.tif") as image:
        assert image.shape == (2, 30, 20) and int(image.sum().compute(scheduler="synchronous")) == 0
    with pytest.raises(FileNotFoundError), open_image(tmp_path / "nope.tif"):
        pass
    with pytest.raises(ValueError, match="shape"), open_image(np.zeros((30, 40, 50))):
        pass
    cores = core_grid((100, 70), 32)
    covered = np.zeros((100, 70), int)
    for y0, y1, x0, x1 in cores:
        covered[y0:y1, x0:x1] += 1
    assert np.all(covered == 1)
    with pytest.raises(ValueError, match="block"):
        BlockConfig(block=8)


def test_predict_command_with_a_local_cluster(tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    from flowseg.apps.cli import main

    (tmp_path / "in").mkdir()
    image, _ = make_sample((120, 140), "brightfield", seed=1)
    tifffile.imwrite(tmp_path / "in" / "b.tif", image)
    (tmp_path / "in" / "bad.tif").write_bytes(b"II*\x00 not a tiff")
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dask",
                 "--workers", "1", "--device", "cpu"])
    out, err = capfd.readouterr()  # file descriptors: the worker processes' output too
    assert code == 1 and "1 written" in out and "1 failed" in out
    # The bad file is named once, with its reason, and no worker prints a traceback for it.
    assert err.count("bad.tif") == 1 and "Traceback" not in err + out, err
    assert read_labels(tmp_path / "out" / "b_label.tiff").shape == (120, 140)


def test_worker_env_shares_the_cores() -> None:
    env = worker_env(2, cores=8)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["NUMBA_NUM_THREADS"] == "4"
    assert worker_env(16, cores=8)["OMP_NUM_THREADS"] == "1"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def test_torch_in_a_worker_gets_the_threads_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dask's nanny would leave torch one thread, whatever OMP_NUM_THREADS says in ``env``.
    for name in (*worker_env(1), "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)  # the caller's own settings would win
    with local_cluster(1, cores=2) as cluster, Client(cluster) as c:
        assert list(c.run(torch_threads).values()) == [2]
        assert c.submit(torch_threads, pure=False).result() == 2
        # dask's immediate trimming of freed memory halves torch's speed: not in our workers
        assert list(c.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == [None]
    # a second cluster gets its own share, not the settings the first one left behind
    with local_cluster(2, cores=2) as cluster, Client(cluster) as c:
        assert list(c.run(torch_threads).values()) == [1, 1]
    assert "OMP_NUM_THREADS" not in os.environ


@pytest.mark.parametrize(("cells", "given"), [(12.0, None), (30.0, None), (12.0, 15.0)])
def test_blocks_take_the_scale_one_process_takes(tmp_path: Path, client: Client, cells: float,
                                                 given: float | None) -> None:
    # 12-px nuclei are enlarged by the automatic diameter (2.4x), 30-px ones run as they are; a
    # diameter given is taken as one process takes it. Blocks of 256 px: the labels of one process.
    image, _ = make_sample((512, 576), "nuclei", seed=5, diameter=cells)
    single = segment(image, device="cpu", diameter=given)
    out = segment_large(image, tmp_path / "x.zarr", client=client, device="cpu", diameter=given,
                        blocks=BlockConfig(block=256, margin=64))
    blocked = np.asarray(zarr.open_array(str(out), mode="r")[:])
    agreement = match_labels(single, blocked)
    assert blocked.max() > 30 and agreement.f1 >= 0.999 and agreement.mean_iou >= 0.99


def test_blocks_write_geojson_of_the_slides_cells(tmp_path: Path, client: Client) -> None:
    import json

    from tests.test_geojson import fill

    image, _ = make_sample((384, 416), "nuclei", seed=8, diameter=24.0)
    out = segment_large(image, tmp_path / "x.zarr", client=client, device="cpu", diameter=30,
                        blocks=BlockConfig(block=128, margin=48), geojson=tmp_path / "x.geojson")
    labels = np.asarray(zarr.open_array(str(out), mode="r")[:])
    features = json.loads((tmp_path / "x.geojson").read_text())["features"]
    ids = [f["properties"]["label"] for f in features]
    assert sorted(ids) == list(range(1, int(labels.max()) + 1))  # every cell once
    for feature in features:  # polygons in the slide's own pixels, cells split by no block
        cell = labels == feature["properties"]["label"]
        np.testing.assert_array_equal(fill(feature["geometry"], labels.shape), cell)
        assert feature["properties"]["measurements"]["area"] == cell.sum()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch


def test_dask_refuses_the_outputs_it_does_not_write(tmp_path: Path,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    from flowseg.apps.cli import main

    (tmp_path / "in").mkdir()
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dask",
                 "--save-csv", "--save-rois"])
    assert code == 1 and "--save-csv, --save-rois do not work with --dask" in capfd.readouterr().err


def test_blocks_read_level_0_of_a_pyramidal_slide(tmp_path: Path, client: Client) -> None:
    from tests.test_pixelsize import write_ome_pyramid

    image, _ = make_sample((384, 352), "nuclei", seed=9, diameter=24.0)
    image = image if image.ndim == 2 else image[..., 2]
    write_ome_pyramid(tmp_path / "slide.ome.tif", image, 0.5)
    out = segment_large(tmp_path / "slide.ome.tif", tmp_path / "x.zarr", client=client,
                        device="cpu", blocks=BlockConfig(block=128, margin=48), diameter=30)
    blocked = np.asarray(zarr.open_array(str(out), mode="r")[:])
    assert blocked.shape == (384, 352)
    assert match_labels(segment(image, device="cpu", diameter=30), blocked).f1 >= 0.999


def test_predict_on_dask_prints_a_line_per_image_and_not_dasks_logs(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from flowseg.apps.cli import main

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", make_sample((96, 96), "nuclei", seed=2)[0])
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dask",
                 "--workers", "1", "--device", "cpu"]) == 0
    out, err = capfd.readouterr()
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert "a.tif: written" in lines and "1 written, 0 already there, 0 failed" in lines
    assert len(lines) <= 4, lines  # dask's scheduler and nanny lines (~30) stay out


def test_a_foreign_folder_in_the_output_is_left_alone(tmp_path: Path, client: Client) -> None:
    # The scratch of a whole-slide TIFF had the fixed name .<name>.zarr, and was removed after.
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "big.tif", make_sample((256, 256), "nuclei", seed=3)[0],
                     tile=(64, 64))
    foreign = tmp_path / "out" / ".big.zarr"
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("someone's")
    report = predict_with_dask(tmp_path / "in", tmp_path / "out", client=client, device="cpu",
                               blocks=BlockConfig(block=64, margin=16), diameter=30)
    assert report["written"] == ["big.tif"] and (foreign / "mine.txt").read_text() == "someone's"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".big.zarr", "big_label.tiff"]
