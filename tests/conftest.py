"""Synthetic fixtures with answers known by construction, and the real samples when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from skimage.draw import disk, ellipse

from flowseg.training.synthetic import random_touching_labels

# The same examples on every run: CI never fails on a draw that a developer's run did not see.
settings.register_profile("flowseg", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("flowseg")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _caches_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """Keep the suite out of the user's ~/.cache/flowseg (targets, ONNX exports, layout).

    FLOWSEG_CACHE names the targets' folder; the ONNX exports and the execution plan live
    beside it, so all three land in the session's temporary folder, and subprocesses inherit it.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWSEG_CACHE", str(tmp_path_factory.mktemp("cache") / "targets"))
        yield


def touching_disks() -> np.ndarray:
    """Rows of disks that overlap, cut by a Voronoi-like rule: each pixel to the nearer centre."""
    labels = np.zeros((96, 128), np.uint32)
    best = np.full(labels.shape, np.inf)
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    k = 0
    for cy in range(16, 96, 26):
        for cx in range(16, 128, 26):
            k += 1
            d = np.hypot(yy - cy, xx - cx)
            win = (d <= 15) & (d < best)
            best[win], labels[win] = d[win], k
    return labels


def non_convex_cells() -> np.ndarray:
    """A C shape whose centre of mass lies outside it, an L shape, a U with a cell in its bay."""
    labels = np.zeros((80, 120), np.uint32)
    labels[10:40, 10:40] = 5
    labels[18:32, 18:40] = 0  # C opening to the right
    labels[45:75, 10:20] = 9
    labels[65:75, 10:45] = 9  # L
    labels[15:70, 60:110] = 300
    labels[15:58, 72:98] = 0  # U opening upwards
    rr, cc = disk((35, 85), 9, shape=labels.shape)
    labels[rr, cc] = 70_000  # a cell in the U's bay, with an id beyond uint16
    return labels


def ring_cell() -> np.ndarray:
    """An annulus with a cell in its hole: heat meets itself opposite the source (a saddle)."""
    labels = np.zeros((60, 60), np.uint32)
    rr, cc = disk((30, 30), 22, shape=labels.shape)
    labels[rr, cc] = 3
    rr, cc = disk((30, 30), 12, shape=labels.shape)
    labels[rr, cc] = 0
    rr, cc = disk((30, 30), 7, shape=labels.shape)
    labels[rr, cc] = 8
    return labels


def elongated_cells() -> np.ndarray:
    labels = np.zeros((100, 100), np.uint32)
    for k, (cy, cx, ry, rx, angle) in enumerate(
        [(20, 50, 6, 40, 0.1), (45, 50, 5, 35, -0.2), (75, 30, 25, 6, 0.3), (75, 75, 7, 20, 1.0)],
        start=1,
    ):
        rr, cc = ellipse(cy, cx, ry, rx, shape=labels.shape, rotation=angle)
        labels[rr, cc] = k * 11
    return labels


def mixed_cells() -> np.ndarray:
    """Touching disks, non-convex and elongated cells side by side, and a 1-pixel cell."""
    a, b, c = touching_disks(), non_convex_cells(), elongated_cells()
    labels = np.zeros((110, 370), np.uint32)
    labels[:96, :128] = a
    labels[:80, 130:250] = np.where(b > 0, b + 1000, 0)
    labels[:100, 255:355] = np.where(c > 0, c + 200_000, 0)
    labels[105, 362] = 4_000_000_000  # a 1-pixel cell with a near-uint32-max id
    return labels


@pytest.fixture(params=["touching_disks", "non_convex", "elongated", "mixed", "dense"])
def synthetic_labels(request: pytest.FixtureRequest) -> np.ndarray:
    makers = {
        "touching_disks": touching_disks,
        "non_convex": non_convex_cells,
        "elongated": elongated_cells,
        "mixed": mixed_cells,
        "dense": lambda: random_touching_labels((256, 256), seed=3),
    }
    return makers[request.param]()


@pytest.fixture
def empty_labels() -> np.ndarray:
    return np.zeros((40, 50), np.uint32)


def shared_pairs() -> list[tuple[Path, Path]]:
    if not (SHARED_DATA / "images").is_dir():
        return []
    from flowseg.io.files import find_pairs

    return find_pairs(SHARED_DATA / "images", SHARED_DATA / "labels")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "shared_pair" in metafunc.fixturenames:
        pairs = shared_pairs()
        params = [pytest.param(p, id=p[0].stem) for p in pairs] or [
            pytest.param(None, marks=pytest.mark.skip(reason=f"no real samples at {SHARED_DATA}"))
        ]
        metafunc.parametrize("shared_pair", params)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random network saved as a checkpoint: fast, and answers are not the point."""
    import torch

    from flowseg.model.net import FlowUNet, NetConfig, save_net

    torch.manual_seed(0)
    net = FlowUNet(NetConfig(widths=(8, 16), full_res=4)).eval()
    return save_net(net, tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def shared_volume() -> tuple[Path, Path]:
    """The real labelled z-stack of ../shared/data3d: ``(image path, label path)``."""
    folder = SHARED_DATA.parent / "data3d"
    if not (folder / "images").is_dir():
        pytest.skip(f"no real z-stack at {folder}")
    from flowseg.io.files import find_pairs

    return find_pairs(folder / "images", folder / "labels")[0]
