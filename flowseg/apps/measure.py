"""What people do right after segmenting: a table of per-cell measurements, and ImageJ ROIs.

Reads labels (and pixels) only, never the network. Measurements come from
:func:`skimage.measure.regionprops_table`; ROIs are written with roifile, the ImageJ ROI library
by tifffile's author, as a zip that Fiji's ROI Manager opens.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError

# regionprops_table names, in the order of the table's columns.
PROPERTIES = ("label", "area", "centroid", "bbox", "equivalent_diameter_area", "eccentricity",
              "solidity", "perimeter")
INTENSITY = ("intensity_mean", "intensity_min", "intensity_max")


def measure(labels: npt.ArrayLike, image: npt.ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Measure every cell: one row per label, one column per measurement.

    Parameters
    ----------
    labels : (H, W) array_like of non-negative integers
    image : (C, H, W) array_like, optional
        Pixels for the intensity columns (``intensity_mean-0`` ... per channel); a 2-D image is
        one channel.

    Returns
    -------
    table : dict of str to (N,) ndarray
        ``label``, ``area``, ``centroid-0`` (row), ``centroid-1`` (column), ``bbox-0..3``
        (min row, min col, max row, max col; max exclusive), ``equivalent_diameter_area``,
        ``eccentricity``, ``solidity``, ``perimeter``, then the intensity columns.

    Raises
    ------
    ValueError
        If the labels are not 2-D or the image does not match them.

    Examples
    --------
    >>> labels = np.zeros((6, 6), np.uint16); labels[1:3, 1:4] = 5
    >>> table = measure(labels, np.full((1, 6, 6), 2.0))
    >>> table["label"].tolist(), table["area"].tolist(), table["intensity_mean-0"].tolist()
    ([5], [6.0], [2.0])
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be 2-D, got shape {labels.shape}")
    if image is None:
        return regionprops_table(labels, properties=PROPERTIES)
    pixels = np.asarray(image, np.float32)
    pixels = pixels[None] if pixels.ndim == 2 else pixels
    if pixels.shape[1:] != labels.shape:
        raise InputError(f"image of shape {pixels.shape} does not match labels {labels.shape}")
    table = regionprops_table(labels, np.moveaxis(pixels, 0, -1),
                              properties=PROPERTIES + INTENSITY)
    return table


def write_csv(table: dict[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write a table as CSV, atomically.

    Parameters
    ----------
    table : dict of str to (N,) ndarray
    path : str or PathLike

    Returns
    -------
    path : Path
    """
    from flowseg.io import write_atomic

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(list(table))
    for row in zip(*(np.asarray(v).tolist() for v in table.values()), strict=True):
        writer.writerow(row)
    return write_atomic(path, text.getvalue().encode())


def label_outlines(labels: npt.ArrayLike) -> dict[int, npt.NDArray[np.float64]]:
    """Trace the outer outline of every cell as a polygon in ImageJ coordinates.

    Parameters
    ----------
    labels : (H, W) array_like of non-negative integers

    Returns
    -------
    outlines : dict of int to (K, 2) ndarray
        ``x, y`` vertices per label, on the pixel edges (ImageJ's pixel ``(x, y)`` covers
        ``[x, x + 1) x [y, y + 1)``), so that filling the polygon gives the cell's pixels back
        up to its corners.
    """
    from scipy.ndimage import find_objects
    from skimage.measure import find_contours

    labels = np.asarray(labels)
    outlines = {}
    for index, box in enumerate(find_objects(labels), start=1):
        if box is None:
            continue
        cell = np.pad(labels[box] == index, 1)
        contours = find_contours(cell.astype(np.float32), 0.5)
        if not contours:
            continue
        longest = max(contours, key=len)  # the outer boundary; holes were filled by masks
        rows = longest[:, 0] - 1 + box[0].start + 0.5
        cols = longest[:, 1] - 1 + box[1].start + 0.5
        outlines[index] = np.stack([cols, rows], axis=1)
    return outlines


def write_rois(labels: npt.ArrayLike, path: str | os.PathLike[str]) -> Path:
    """Write one polygon ROI per cell, named by its label, into a zip Fiji's ROI Manager opens.

    Parameters
    ----------
    labels : (H, W) array_like of non-negative integers
    path : str or PathLike
        Usually ``<name>_rois.zip``.

    Returns
    -------
    path : Path
    """
    from roifile import ROI_TYPE, ImagejRoi

    from flowseg.io import write_atomic

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for label, points in label_outlines(labels).items():
            roi = ImagejRoi.frompoints(points, name=str(label))
            roi.roitype = ROI_TYPE.POLYGON
            archive.writestr(f"{label}.roi", roi.tobytes())
    return write_atomic(path, buffer.getvalue())
