from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from flowseg.inference.normalize import resize_to
from flowseg.io import write_labels
from flowseg.representation.flows import labels_to_targets
from flowseg.training.augment import _resample, augment, jitter_intensity
from flowseg.training.dataset import (
    DataConfig,
    FlowDataset,
    discover_pairs,
    epoch_order,
    prepare_pair,
)
from flowseg.training.synthetic import make_sample, random_touching_labels


def write_pairs(root: Path, count: int = 3, size: int = 64) -> Path:
    (root / "images").mkdir(parents=True)
    for i in range(count):
        image, labels = make_sample((size, size), "fluorescence", seed=i)
        tifffile.imwrite(root / "images" / f"s{i}.tif", image)
        write_labels(labels, root / "labels" / f"s{i}_label.tiff")
    return root


def test_augmenting_labels_agrees_with_augmenting_flows() -> None:
    labels = random_touching_labels((160, 160), diameter=(20, 40), seed=1)
    targets = labels_to_targets(labels)
    for seed in range(6):
        kwargs = {"crop": 96, "zoom": [0.8, 1.0, 1.3][seed % 3], "rotate": True, "mirror": True}
        _, moved = augment(targets[:1], targets, rng=np.random.default_rng(seed), **kwargs)
        ids, _ = augment(labels[None].astype(np.float32), np.stack([labels] * 3).astype(np.float32),
                         rng=np.random.default_rng(seed), **kwargs)
        # The same rng draws give the same map: bilinear ids are exact away from cell borders.
        moved_labels = np.where(np.abs(ids[0] - np.round(ids[0])) < 1e-3, np.round(ids[0]), 0)
        # Compare away from cell borders, where resampling decides which cell a pixel joins.
        interior = (moved_labels > 0) & (ndimage.minimum_filter(moved_labels, 5)
                                         == ndimage.maximum_filter(moved_labels, 5))
        fresh = labels_to_targets(moved_labels.astype(np.uint32))
        cos = (fresh[:2] * moved[:2]).sum(axis=0)
        assert np.median(cos[interior & (moved[2] > 0)]) > 0.95


def test_a_mirror_negates_one_component() -> None:
    labels = random_touching_labels((64, 64), seed=2)
    targets = labels_to_targets(labels)

    class Draws:  # rotation 0, mirror yes, crop centred on the image centre
        def uniform(self, low: float, high: float) -> float:
            return 0.0 if high == 2 * np.pi else (low + high) / 2

        def random(self) -> float:
            return 0.0

    _, out = augment(targets[:1], targets, crop=64, zoom=1.0, rng=Draws(), rotate=True,
                     mirror=True)
    expected = targets[:, :, ::-1].copy()
    expected[1] *= -1
    interior = out[2] > 0
    assert np.abs(out[:2] - expected[:2])[:, interior].max() < 1e-5


def test_dataset_caches_and_repeats(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "data")
    pairs = discover_pairs(root)
    cache = tmp_path / "cache"
    ds = FlowDataset(pairs, DataConfig(crop=48), cache)
    files = sorted(p.name for p in cache.iterdir())
    assert len([f for f in files if f.endswith(".json")]) == 3
    x1, y1 = ds[(1, 123)]
    x2, y2 = ds[(1, 123)]
    assert x1.shape == (3, 48, 48) and y1.shape == (3, 48, 48)
    assert np.array_equal(x1.numpy(), x2.numpy()) and np.array_equal(y1.numpy(), y2.numpy())
    again = FlowDataset(pairs, DataConfig(crop=48), cache)  # from the cache
    assert np.array_equal(again[(1, 123)][1].numpy(), y1.numpy())
    entry = prepare_pair(*pairs[0], cache)
    assert entry["cells"] > 0 and entry["diameter"] > 5


def parity_classes(labels: np.ndarray) -> np.ndarray:
    """A class-map target: 0 background, 1 odd ids, 2 even ids."""
    return np.where(labels > 0, 2 - labels % 2, 0)[None].astype(np.float32)


def test_other_targets_are_cached_apart_and_resampled_as_they_are(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "data", count=2)
    pairs, cache = discover_pairs(root), tmp_path / "cache"
    flows = FlowDataset(pairs, DataConfig(crop=48), cache)
    classes = FlowDataset(pairs, DataConfig(crop=48), cache, targets=parity_classes, flows=False)
    assert len(list(cache.glob("*.json"))) == 4  # one entry per pair and representation
    x_flow, y_flow = flows[(0, 9)]
    x_cls, y_cls = classes[(0, 9)]
    assert y_cls.shape == (1, 48, 48) and set(np.unique(y_cls.numpy())) == {0.0, 1.0, 2.0}
    # the same sample: same pixels, the same cells (nearest neighbour keeps the classes exact)
    assert np.array_equal(x_flow.numpy(), x_cls.numpy())
    assert np.array_equal(y_flow[2].numpy() > 0, y_cls[0].numpy() > 0)


def test_a_span_samples_only_its_part_of_the_image(tmp_path: Path) -> None:
    # Cells only in the last fifth of the longer side (rows of a 160 x 96 image): a dataset of
    # the first four fifths (how a few images train beside their held-out ends) never shows one.
    image, labels = make_sample((160, 96), "fluorescence", seed=3)
    labels[:128] = 0
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    write_labels(labels, tmp_path / "labels" / "a_label.tiff")
    pairs = discover_pairs(tmp_path)
    config = DataConfig(crop=64, scale=(0.5, 2.0))
    head = FlowDataset(pairs, config, tmp_path / "cache", span=(0.0, 0.8))
    whole = FlowDataset(pairs, config, tmp_path / "cache")
    assert max(float(head[(0, seed)][1][2].sum()) for seed in range(40)) == 0
    assert sum(float(whole[(0, seed)][1][2].sum()) > 0 for seed in range(40)) >= 10


def test_small_images_are_padded(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "data", count=1, size=40)
    ds = FlowDataset(discover_pairs(root), DataConfig(crop=64), tmp_path / "cache")
    x, y = ds[(0, 5)]
    assert x.shape == (3, 64, 64) and y[2].sum() > 0 and (y[2] == 0).sum() > 0


def test_lower_resolution_blurs_pixels_and_keeps_targets(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "data", count=1, size=96)
    pairs, cache = discover_pairs(root), tmp_path / "cache"
    plain = DataConfig(crop=64, gain=0, gamma=(1, 1), shuffle_channels=0, gray=0)
    sharp = FlowDataset(pairs, plain, cache)
    soft = FlowDataset(pairs, replace(plain, lowres=1.0, lowres_factor=(4.0, 4.0)), cache)
    (x0, y0), (x1, y1) = sharp[(0, 4)], soft[(0, 4)]
    assert np.array_equal(y0.numpy(), y1.numpy())  # same crop, same flows and cells
    detail = [float(np.abs(np.diff(x.numpy(), 2, axis=-1)).mean()) for x in (x0, x1)]
    assert detail[1] < 0.5 * detail[0]  # fine detail (second differences) is lost
    assert abs(float(x1.mean()) - float(x0.mean())) < 0.05 * float(x0.abs().mean()) + 1e-3


def test_jitter_gray_and_shuffle() -> None:
    image = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    gray = jitter_intensity(image, DataConfig(gray=1.0), np.random.default_rng(1))
    assert np.allclose(gray[0], gray[1]) and np.allclose(gray[1], gray[2])
    same = jitter_intensity(image, DataConfig(gain=0, gamma=(1, 1), shuffle_channels=0, gray=0),
                            np.random.default_rng(1))
    assert np.allclose(same, image)


def test_epoch_order_is_reproducible_and_complete() -> None:
    a = epoch_order(10, batch_size=3, epoch=2, seed=7)
    assert a == epoch_order(10, batch_size=3, epoch=2, seed=7)
    assert a != epoch_order(10, batch_size=3, epoch=3, seed=7)
    assert len(a) == 9 and len({i for i, _ in a}) == 9
    assert len(epoch_order(2, batch_size=8, epoch=0, seed=0)) == 8


def test_bad_data_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images"):
        discover_pairs(tmp_path)
    root = write_pairs(tmp_path / "d1", count=2)
    (root / "labels" / "s1_label.tiff").unlink()
    with pytest.raises(ValueError, match=r"s1\.tif"):
        discover_pairs(root)
    root = write_pairs(tmp_path / "d2", count=1)
    (root / "labels" / "s0_label.tiff").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match=r"s0_label\.tiff: cannot read the header"):
        FlowDataset(discover_pairs(root), cache_dir=tmp_path / "c2")
    root = write_pairs(tmp_path / "d3", count=1)
    write_labels(np.zeros((10, 10), np.uint8), root / "labels" / "s0_label.tiff")
    with pytest.raises(ValueError, match=r"s0_label.tiff: labels of shape \(10, 10\)"):
        FlowDataset(discover_pairs(root), cache_dir=tmp_path / "c3")


def test_worker_safe_resampling_matches_predicts_resize() -> None:
    plane = np.random.default_rng(0).random((50, 37)).astype(np.float32)
    for shape in [(20, 13), (50, 37), (131, 90)]:
        assert np.abs(_resample(plane, shape) - resize_to(plane[None], shape)[0]).max() < 1e-5


def test_the_suite_keeps_out_of_the_users_cache() -> None:
    from flowseg.model.execution import _execution_cache
    from flowseg.model.runtime import _cache_dir
    from flowseg.training.dataset import default_cache_dir

    home_cache = Path.home() / ".cache" / "flowseg"
    for place in (default_cache_dir(), _cache_dir(), _execution_cache()):
        assert home_cache not in place.parents, place
