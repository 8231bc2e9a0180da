from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as connected_regions

from flowseg.synthetic import MODALITIES, random_touching_labels, render


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
        # cells differ from background in every modality
        gray = image.reshape(*labels.shape, -1).astype(float).mean(axis=-1)
        assert abs(gray[labels > 0].mean() - gray[labels == 0].mean()) > 0.02 * gray.max()
    with pytest.raises(ValueError, match="unknown modality"):
        render(labels, "sonar")
