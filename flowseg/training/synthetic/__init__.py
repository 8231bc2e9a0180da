"""Synthetic microscopy with exact labels, for tests, benchmarks and training.

One generator per modality, each a pair: labels of a given typical cell diameter (cells drawn in
:mod:`flowseg.training.synthetic.labels`), and a renderer that draws an image of any labels in that
modality (:mod:`~flowseg.training.synthetic.fluorescence`,
:mod:`~flowseg.training.synthetic.transmitted`, :mod:`~flowseg.training.synthetic.stained`). The camera
and optics they share are in :mod:`flowseg.training.synthetic.optics`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.training.synthetic import fluorescence, membrane, rods, stained, transmitted
from flowseg.training.synthetic.fluorescence import make_nuclei_volume
from flowseg.training.synthetic.labels import random_touching_labels, random_touching_volume

__all__ = ["MODALITIES", "TYPICAL_DIAMETER", "make_nuclei_volume", "make_sample",
           "random_touching_labels", "random_touching_volume", "render"]

Sample = tuple[npt.NDArray[np.integer], npt.NDArray[np.uint32]]
Maker = Callable[[tuple[int, int], float, np.random.Generator], Sample]
Labels = Callable[[tuple[int, int], float, np.random.Generator], npt.NDArray[np.uint32]]
Renderer = Callable[[npt.NDArray[np.uint32], np.random.Generator], npt.NDArray[np.integer]]


def _then_render(make_labels: Labels, draw: Renderer) -> Maker:
    def make(shape: tuple[int, int], diameter: float, rng: np.random.Generator) -> Sample:
        labels = make_labels(shape, diameter, rng)
        return draw(labels, rng), labels

    return make


# modality -> (make a sample, render given labels); tissue samples draw unlabelled structure
# (cell membranes, stroma) that a label image alone does not hold.
_GENERATORS: MappingProxyType[str, tuple[Maker, Renderer]] = MappingProxyType({
    "nuclei": (_then_render(fluorescence.nuclei_labels, fluorescence.render_nuclei),
               fluorescence.render_nuclei),
    "cytoplasm": (_then_render(fluorescence.cytoplasm_labels, fluorescence.render_cytoplasm),
                  fluorescence.render_cytoplasm),
    "brightfield": (_then_render(transmitted.cell_labels, transmitted.render_brightfield),
                    transmitted.render_brightfield),
    "phase": (_then_render(transmitted.cell_labels, transmitted.render_phase),
              transmitted.render_phase),
    "dic": (_then_render(transmitted.cell_labels, transmitted.render_dic), transmitted.render_dic),
    "he": (stained.make_he, stained.render_he),
    "ihc": (stained.make_ihc, stained.render_ihc),
    "skin": (stained.make_skin, stained.render_skin),
    "packed": (_then_render(fluorescence.packed_labels, fluorescence.render_packed),
               fluorescence.render_packed),
    "bacteria": (_then_render(rods.rod_labels, transmitted.render_phase), transmitted.render_phase),
    "membrane": (_then_render(membrane.tissue_cell_labels, membrane.render_membrane),
                 membrane.render_membrane),
    "fluobacteria": (_then_render(rods.rods_bent, fluorescence.render_rods), fluorescence.render_rods),
    "debris": (_then_render(transmitted.debris_labels, transmitted.render_debris),
               transmitted.render_debris),
})
MODALITIES = tuple(_GENERATORS)
# Names of the first generators, kept so that older scripts and seeds still run.
ALIASES = MappingProxyType({"fluorescence": "nuclei", "tissue": "he"})
# Typical cell (nucleus, for tissue) diameter in pixels at a 20-40x objective, per modality.
TYPICAL_DIAMETER = MappingProxyType({"nuclei": 22.0, "cytoplasm": 40.0, "brightfield": 30.0,
                                     "phase": 30.0, "dic": 30.0, "he": 14.0, "ihc": 14.0,
                                     "skin": 12.0, "packed": 22.0,
                                     "bacteria": 20.0, "membrane": 28.0, "fluobacteria": 14.0,
                                     "debris": 40.0})


def make_sample(
    shape: tuple[int, int], modality: str, *, seed: int = 0, diameter: float | None = None,
) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.uint32]]:
    """Make one synthetic microscopy image and its exact instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    modality : str
        One of ``MODALITIES``: ``nuclei`` (nuclear stain: chromatin, a 20x brightness range,
        small bright mitotic/apoptotic nuclei, debris), ``cytoplasm`` (whole cells, with a
        nuclear channel), ``brightfield``, ``phase`` (dark cells in bright halos), ``dic``
        (relief), ``he`` (H&E nuclei among cytoplasm, membranes and collagen), ``ihc``
        (hematoxylin + DAB), ``skin`` (layered H&E section), ``packed`` (nuclei packed
        against neighbours of like brightness across faint seams), ``bacteria`` (rods packed side
        by side in phase contrast), ``membrane`` (whole cells in tissue: membrane stain and a
        nuclear channel, TissueNet-like), ``fluobacteria`` (fluorescent rods, straight or
        curved), ``debris`` (phase contrast or brightfield cells among unlabelled debris, dust
        rings and empty halos). ``fluorescence`` and ``tissue`` are accepted for ``nuclei``
        and ``he``.
    seed : int
        The same seed gives the same sample.
    diameter : float, optional
        Typical cell diameter in pixels (8 to 150 make sense); ``TYPICAL_DIAMETER`` when omitted.

    Returns
    -------
    image : (H, W) or (H, W, C) ndarray of uint8 or uint16
        Laid out as it would be stored in a file.
    labels : (H, W) ndarray of uint32
        Consecutive ids, 0 = background.

    Raises
    ------
    ValueError
        If the modality is unknown or the diameter is not positive.

    Examples
    --------
    >>> image, labels = make_sample((64, 64), "he", seed=0)
    >>> image.shape, image.dtype.name, labels.shape
    ((64, 64, 3), 'uint8', (64, 64))
    """
    name = _check_modality(modality)
    size = TYPICAL_DIAMETER[name] if diameter is None else float(diameter)
    if not size > 0:
        raise InputError(f"diameter must be positive, got {diameter}")
    rng = np.random.default_rng(seed)
    return _GENERATORS[name][0](shape, size, rng)


def render(labels: npt.NDArray[np.uint32], modality: str, *, seed: int = 0) -> npt.NDArray[np.integer]:
    """Render an image of given labels in one modality.

    Parameters
    ----------
    labels : (H, W) ndarray of uint32
        For example from :func:`random_touching_labels` with a chosen density or elongation.
    modality : str
        As :func:`make_sample`.
    seed : int

    Returns
    -------
    image : (H, W) or (H, W, C) ndarray of uint8 or uint16

    Raises
    ------
    ValueError
        If the modality is unknown.

    Examples
    --------
    >>> render(random_touching_labels((32, 32), seed=0), "brightfield").dtype.name
    'uint8'
    """
    name = _check_modality(modality)
    return _GENERATORS[name][1](np.asarray(labels, np.uint32), np.random.default_rng(seed))


def _check_modality(modality: str) -> str:
    name = ALIASES.get(modality, modality)
    if name not in _GENERATORS:
        raise InputError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return name
