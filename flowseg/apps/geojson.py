"""Cells as GeoJSON for QuPath: one Polygon (or MultiPolygon) detection per cell, holes kept.

QuPath imports a GeoJSON ``FeatureCollection`` by drag and drop (File > Import objects): each
Feature's ``properties`` carry ``objectType`` ("detection" for cells), a ``name`` and a
``measurements`` map of numbers, and its geometry is in pixels of the full-resolution image, the
origin at the top-left corner of the top-left pixel (QuPath's documentation, "Exporting
annotations"). Outlines run through the midpoints between a cell's pixel centres and its
neighbours' (marching squares at 0.5, diagonal neighbours connected), so that the polygon holds
exactly the cell's pixel centres; rings are closed, exteriors counter-clockwise and holes clockwise
in the image's ``(x, y)`` (RFC 7946's right-hand rule).

:class:`GeoJsonWriter` streams features to a file, a batch at a time (the Dask path writes a slide's
cells block by block and never holds them all); :func:`write_geojson` writes one image's cells.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt


def cell_geometry(mask: npt.NDArray[np.bool_], origin: tuple[float, float] = (0.0, 0.0)
                  ) -> dict[str, Any] | None:
    """Trace one cell's mask as a GeoJSON Polygon (MultiPolygon if in pieces), holes kept.

    Parameters
    ----------
    mask : (h, w) ndarray of bool
        The cell within its bounding box.
    origin : (float, float)
        ``(y, x)`` of the box's top-left pixel in the image.

    Returns
    -------
    geometry : dict or None
        None for an empty mask.

    Examples
    --------
    >>> square = np.ones((2, 2), bool)  # pixels (10-11, 20-21): centres at 20.5-21.5, 10.5-11.5
    >>> cell_geometry(square, (10, 20))["coordinates"][0][:3]
    [[21.5, 12.0], [20.5, 12.0], [20.0, 11.5]]
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    pieces, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    polygons = []
    for piece in range(1, count + 1):
        padded = np.pad(pieces == piece, 1).astype(np.float32)
        rings = []
        for contour in find_contours(padded, 0.5, fully_connected="high"):
            xy = np.stack([contour[:, 1] - 1 + origin[1] + 0.5,
                           contour[:, 0] - 1 + origin[0] + 0.5], axis=1)
            if len(xy) >= 3:
                rings.append(xy)
        if not rings:
            continue
        areas = [_signed_area(r) for r in rings]
        outer = int(np.argmax(np.abs(areas)))  # the exterior encloses every hole
        ordered = [rings[outer]] + [r for k, r in enumerate(rings) if k != outer]
        signs = [1.0] + [-1.0] * (len(ordered) - 1)
        polygons.append([_closed(r if _signed_area(r) * s > 0 else r[::-1])
                         for r, s in zip(ordered, signs, strict=True)])
    if not polygons:
        return None
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def _signed_area(ring: npt.NDArray[np.float64]) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def _closed(ring: npt.NDArray[np.float64]) -> list[list[float]]:
    points = [[round(float(x), 3), round(float(y), 3)] for x, y in ring]
    if points[0] != points[-1]:
        points.append(points[0])
    return points


def cell_features(labels: npt.NDArray[np.integer], *, image: npt.ArrayLike | None = None,
                  origin: tuple[int, int] = (0, 0), offset: int = 0,
                  pixel_size: float | None = None) -> Iterator[dict[str, Any]]:
    """Yield one QuPath detection Feature per cell of ``labels``.

    Parameters
    ----------
    labels : (H, W) ndarray of non-negative integers
    image : (C, H, W) array_like, optional
        Pixels for the intensity measurements, as ``--save-csv`` has them.
    origin : (int, int)
        ``(y, x)`` of ``labels``' top-left pixel in the full image (a Dask block's, say).
    offset : int
        Added to every label id (a block's first global id, less one).
    pixel_size : float, optional
        Micrometres per pixel: adds ``Area um^2`` and ``Diameter um`` to the measurements.

    Yields
    ------
    feature : dict
        ``properties``: ``objectType`` "detection", ``name`` "cell <id>", ``label`` (the id in
        the label image) and ``measurements`` (every column of
        :func:`flowseg.apps.measure.measure`, centroids and boxes in full-image pixels).
    """
    from scipy.ndimage import find_objects

    from flowseg.apps.measure import measure

    labels = np.asarray(labels)
    table = measure(labels, image)
    rows = {int(k): i for i, k in enumerate(table["label"])}
    shift = {"centroid-0": origin[0], "centroid-1": origin[1], "bbox-0": origin[0],
             "bbox-1": origin[1], "bbox-2": origin[0], "bbox-3": origin[1]}
    for index, box in enumerate(find_objects(labels), start=1):
        if box is None:
            continue
        geometry = cell_geometry(labels[box] == index,
                                 (origin[0] + box[0].start, origin[1] + box[1].start))
        if geometry is None:
            continue
        row = rows[index]
        values = {name: float(column[row]) + shift.get(name, 0)
                  for name, column in table.items() if name != "label"}
        if pixel_size:
            values["Area um^2"] = values["area"] * pixel_size**2
            values["Diameter um"] = values["equivalent_diameter_area"] * pixel_size
        cell = index + int(offset)
        yield {"type": "Feature", "id": f"cell-{cell}", "geometry": geometry,
               "properties": {"objectType": "detection", "name": f"cell {cell}", "label": cell,
                              "measurements": values}}


class GeoJsonWriter:
    """Write a FeatureCollection to an open text stream, feature by feature."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.count = stream, 0
        stream.write('{"type": "FeatureCollection", "features": [\n')

    def add(self, features: Any) -> None:
        """Write features (any iterable of Feature dicts)."""
        self.add_json(json.dumps(feature) for feature in features)

    def add_json(self, lines: Any) -> None:
        """Write features already encoded, one JSON text each (lines of a part file, say)."""
        for line in lines:
            self.stream.write((",\n" if self.count else "") + line.rstrip("\n"))
            self.count += 1

    def close(self) -> None:
        """End the collection."""
        self.stream.write("\n]}\n")


def write_geojson(labels: npt.ArrayLike, path: str | os.PathLike[str], *,
                  image: npt.ArrayLike | None = None, pixel_size: float | None = None) -> Path:
    """Write one image's cells as ``<name>_cells.geojson`` for QuPath, atomically.

    Parameters
    ----------
    labels : (H, W) array_like of non-negative integers
    path : str or PathLike
    image : (C, H, W) array_like, optional
        For the intensity measurements.
    pixel_size : float, optional
        Micrometres per pixel, for the measurements in micrometres.

    Returns
    -------
    path : Path
    """
    from flowseg.io import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "w") as stream:
            writer = GeoJsonWriter(stream)
            writer.add(cell_features(np.asarray(labels), image=image, pixel_size=pixel_size))
            writer.close()

    return write_atomic(path, write)
