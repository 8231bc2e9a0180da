from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation
from skimage.measure import label as connected_regions

from flowseg.training.synthetic import (
    MODALITIES,
    make_nuclei_volume,
    make_sample,
    random_touching_labels,
    render,
)
from flowseg.training.synthetic.labels import add_small_cells, label_edges


def test_cells_touch_are_connected_and_reproducible() -> None:
    labels = random_touching_labels((200, 300), seed=7)
    assert np.array_equal(labels, random_touching_labels((200, 300), seed=7))
    assert not np.array_equal(labels, random_touching_labels((200, 300), seed=8))
    n = int(labels.max())
    assert np.array_equal(np.unique(labels), np.arange(n + 1))
    # one 4-connected region per id
    assert connected_regions(labels, background=0, connectivity=1).max() == n
    # neighbours touch: many pixels have a different non-zero id to their right
    right = (labels[:, 1:] > 0) & (labels[:, :-1] > 0) & (labels[:, 1:] != labels[:, :-1])
    assert right.sum() > 200
    sizes = np.bincount(labels.ravel())[1:]
    assert 0.6 < (labels > 0).mean() < 0.9 and np.median(np.sqrt(sizes * 4 / np.pi)) > 15


def test_density_and_bad_settings() -> None:
    sparse = random_touching_labels((200, 200), density=0.4, seed=1)
    dense = random_touching_labels((200, 200), density=1.0, seed=1)
    assert (sparse > 0).mean() < (dense > 0).mean()
    with pytest.raises(ValueError, match="synthetic"):
        random_touching_labels((10, 10), diameter=(5, 2))


@pytest.mark.parametrize("fixture", ["touching_disks", "non_convex_cells", "elongated_cells",
                                     "mixed_cells", "ring_cell"])
def test_fixtures_have_one_region_per_id(fixture: str) -> None:
    from . import conftest

    labels = getattr(conftest, fixture)()
    regions = connected_regions(labels, background=0, connectivity=1)
    assert regions.max() == len(np.unique(labels)) - 1


def test_render_draws_any_labels_in_every_modality() -> None:
    labels = random_touching_labels((64, 64), density=0.4, elongation=3.0, seed=2)
    for modality in MODALITIES:
        image = render(labels, modality, seed=1)
        assert image.shape[:2] == labels.shape
        assert np.array_equal(image, render(labels, modality, seed=1))
        gray = image.reshape(*labels.shape, -1).astype(float).mean(axis=-1)
        # cells differ from background in every modality: in brightness, or (DIC) in relief
        contrast = abs(gray[labels > 0].mean() - gray[labels == 0].mean())
        relief = gray[labels > 0].std() - gray[labels == 0].std()
        assert max(contrast, relief) > 0.02 * gray.max(), modality
    with pytest.raises(ValueError, match="unknown modality"):
        render(labels, "sonar")


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("diameter", [8.0, 40.0, 150.0])
def test_every_generator_gives_clean_labels_at_every_size(modality: str, diameter: float) -> None:
    image, labels = make_sample((192, 224), modality, seed=3, diameter=diameter)
    again, same = make_sample((192, 224), modality, seed=3, diameter=diameter)
    assert np.array_equal(image, again) and np.array_equal(labels, same)
    assert image.shape[:2] == labels.shape == (192, 224)
    assert image.dtype in (np.uint8, np.uint16) and labels.dtype == np.uint32
    n = int(labels.max())
    assert n >= 1 and np.array_equal(np.unique(labels), np.arange(n + 1))
    assert connected_regions(labels, background=0, connectivity=1).max() == n
    if n >= 8 and modality not in ("he", "ihc", "skin"):
        # the typical cell has about the size asked for (tissue mixes nuclei with fibroblasts)
        sizes = np.bincount(labels.ravel())[1:]
        assert 0.5 * diameter < np.median(2 * np.sqrt(sizes / np.pi)) < 1.5 * diameter


def test_small_bright_nuclei_and_old_names() -> None:
    base = np.zeros((80, 80), np.uint32)
    base[10:30, 10:30] = 1
    out, added = add_small_cells(base, 20, (5, 7), rng=np.random.default_rng(0))
    assert np.array_equal(out[base > 0], base[base > 0]) and len(added) > 0
    grown = np.isin(out, added)
    assert not (grown & (base > 0)).any()
    assert make_sample((32, 32), "fluorescence", seed=1)[0].shape[:2] == (32, 32)
    with pytest.raises(ValueError, match="diameter"):
        make_sample((32, 32), "nuclei", diameter=-1)


def test_nuclei_volume_is_a_stack_of_clean_3d_nuclei() -> None:
    image, labels = make_nuclei_volume((32, 64, 64), 14, np.random.default_rng(3))
    again, _ = make_nuclei_volume((32, 64, 64), 14, np.random.default_rng(3))
    assert np.array_equal(image, again) and image.dtype == np.uint16
    ids = int(labels.max())
    assert ids > 10 and np.array_equal(np.unique(labels), np.arange(ids + 1))
    assert connected_regions(labels > 0, connectivity=1).max() <= ids  # no stray pieces
    for k in range(1, ids + 1):  # one 6-connected piece per nucleus
        assert connected_regions(labels == k, connectivity=1).max() == 1
    # nuclei are brighter than the background around them, on average
    assert image[labels > 0].mean() > 2 * image[labels == 0].mean()


def test_packed_nuclei_touch_across_faint_seams_and_look_alike() -> None:
    labels = random_touching_labels((160, 160), diameter=(18, 26), density=0.9, seed=5)
    seams = label_edges(labels) & (labels > 0)
    inside = (labels > 0) & ~seams

    def seam_contrast_and_spread(modality: str) -> tuple[float, float]:
        contrasts, spreads = [], []
        for seed in range(4):
            image = render(labels, modality, seed=seed).astype(float)
            gray = image if image.ndim == 2 else image.max(axis=-1)
            contrasts.append(gray[seams].mean() / gray[inside].mean())
            means = np.bincount(labels.ravel(), gray.ravel())[1:] / np.bincount(labels.ravel())[1:]
            spreads.append(np.percentile(means, 90) / np.percentile(means, 10))
        return float(np.mean(contrasts)), float(np.mean(spreads))

    packed_seam, packed_spread = seam_contrast_and_spread("packed")
    nuclei_seam, nuclei_spread = seam_contrast_and_spread("nuclei")
    assert packed_seam > nuclei_seam + 0.1  # seams barely darker than the insides
    assert packed_spread < 2.5 < nuclei_spread  # neighbours alike, not a 20x range


def test_bacteria_are_rods_lying_side_by_side() -> None:
    from skimage.measure import regionprops

    image, labels = make_sample((256, 256), "bacteria", seed=2, diameter=20.0)
    shapes = regionprops(labels)
    whole = [r for r in shapes if min(r.bbox[:2]) > 0 and r.bbox[2] < 256 and r.bbox[3] < 256]
    ratios = np.array([r.axis_major_length / max(r.axis_minor_length, 1) for r in whole])
    assert len(whole) > 30 and np.median(ratios) > 2.0  # rods, not disks
    left, right = labels[:, :-1], labels[:, 1:]
    up, down = labels[:-1], labels[1:]
    contacts = ((left != right) & (left > 0) & (right > 0)).sum() + \
        ((up != down) & (up > 0) & (down > 0)).sum()
    assert contacts > 0.02 * (labels > 0).sum()  # packed against neighbours
    gray = image if image.ndim == 2 else image.mean(axis=-1)
    assert gray[labels > 0].mean() < gray[labels == 0].mean()  # phase contrast: dark bodies


def test_membrane_stain_outlines_whole_cells_with_a_nucleus_channel() -> None:
    labels = random_touching_labels((160, 160), diameter=(22, 32), density=0.95, seed=4)
    seams = label_edges(labels) & (labels > 0)
    deep = (labels > 0) & ~binary_dilation(seams, iterations=3)
    for seed in range(3):
        image = render(labels, "membrane", seed=seed).astype(float)
        channels = [image[..., c] for c in range(image.shape[-1]) if image[..., c].any()]
        assert len(channels) == 2, seed  # membrane + nuclei (two channels, or green + blue)
        membrane, nuclei = channels
        assert membrane[seams].mean() > 1.5 * membrane[deep].mean()  # bright rings on the borders
        assert nuclei[deep].mean() > 2 * nuclei[seams].mean()  # nuclei inside, not on the rings


def test_fluorescent_bacteria_bend_and_shine() -> None:
    from skimage.measure import regionprops

    from flowseg.training.synthetic.rods import rod_labels

    def solidity(bend: float) -> float:
        labels = rod_labels((256, 256), 20.0, np.random.default_rng(1), bend=bend)
        whole = [r for r in regionprops(labels) if r.area > 150]
        return float(np.median([r.solidity for r in whole]))

    assert solidity(0.25) < solidity(0.0) - 0.04  # curved rods are further from convex
    image, labels = make_sample((192, 192), "fluobacteria", seed=2, diameter=14.0)
    assert image.ndim == 2 and image[labels > 0].mean() > 2 * image[labels == 0].mean()


def test_debris_is_drawn_but_not_labelled() -> None:
    from scipy.ndimage import gaussian_filter

    labels = random_touching_labels((192, 192), diameter=(30, 40), density=0.3, seed=6)
    away = ~binary_dilation(labels > 0, iterations=8)

    def outliers(modality: str, seed: int) -> float:
        image = render(labels, modality, seed=seed).astype(float)
        gray = image if image.ndim == 2 else image.mean(axis=-1)
        detail = gaussian_filter(gray, 1.0) - gaussian_filter(gray, 8.0)  # not uneven light
        return float((np.abs(detail[away]) > 12).mean())

    debris = [outliers("debris", seed) for seed in range(6)]
    plain = [outliers("phase", seed) for seed in range(6)]
    assert np.mean(debris) > 2 * np.mean(plain)  # structure where no cell is labelled
