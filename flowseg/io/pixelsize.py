"""The physical size of a pixel, read from the file: OME-TIFF, Aperio SVS, ImageJ and TIFF tags.

A pathologist knows that nuclei are about 6-10 micrometres at any magnification; converting that
to pixels needs the file's pixel size. Sources, most specific first:

- OME-TIFF (OME-XML ``Pixels`` ``PhysicalSizeX``/``PhysicalSizeY`` with their units);
- Aperio SVS (``MPP = 0.4990`` in the description);
- ImageJ TIFF (``unit=micron`` in its description, the size from the resolution tags);
- OME-Zarr (level 0's scale, in the unit its axes name);
- other TIFFs (NDPI, scanners, Bio-Formats exports): the resolution tags in centimetres, or in
  inches where they give under 100 um a pixel (a 72 or 300 dpi default is a screen's or a
  printer's, not a microscope's).

PNG, BMP and JPEG files carry none flowseg reads: their pixel size is unknown.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import tifffile

from flowseg.io.headers import TIFF_SUFFIXES

# Micrometres per unit, for the units OME-XML and ImageJ write.
UNITS = {"nm": 1e-3, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "micron": 1.0, "microns": 1.0,
         "mm": 1e3, "cm": 1e4, "m": 1e6}
# A pixel larger than this (in um) is no microscope's: a resolution tag left at a default.
LARGEST_PIXEL_UM = 100.0


@dataclass(frozen=True)
class PixelSize:
    """Micrometres per pixel along y and x, and where the file said so.

    Attributes
    ----------
    y, x : float
    source : str
        ``OME``, ``Aperio``, ``ImageJ`` or ``TIFF resolution``.
    """

    y: float
    x: float
    source: str

    @property
    def mean(self) -> float:
        """The mean of y and x: what a diameter in micrometres is converted with."""
        return (self.y + self.x) / 2


def read_pixel_size(path: str | os.PathLike[str]) -> PixelSize | None:
    """Return a file's pixel size in micrometres, or None where it says none (or is not a TIFF).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    size : PixelSize or None

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> p = Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.zeros((4, 4), np.uint8), resolution=(2e4, 2e4),
    ...                  resolutionunit="CENTIMETER")
    >>> read_pixel_size(p)
    PixelSize(y=0.5, x=0.5, source='TIFF resolution')
    """
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        from flowseg.io.omezarr import ome_zarr_pixel_size

        found = ome_zarr_pixel_size(path)
        return _checked(found[0], found[1], "OME-Zarr") if found else None
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return (_ome(tif.ome_metadata) if tif.is_ome else None) or \
                (_aperio(page.description) if tif.is_svs else None) or \
                (_imagej(tif.imagej_metadata, page) if tif.is_imagej else None) or \
                _resolution(page)
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError):
        return None


def _ome(xml: str | None) -> PixelSize | None:
    if not xml:
        return None
    for element in ElementTree.fromstring(xml).iter():
        if element.tag.endswith("}Pixels") or element.tag == "Pixels":
            x, y = element.get("PhysicalSizeX"), element.get("PhysicalSizeY") or \
                element.get("PhysicalSizeX")
            if x is None:
                return None
            unit_x = UNITS.get(element.get("PhysicalSizeXUnit", "µm"))
            unit_y = UNITS.get(element.get("PhysicalSizeYUnit", "µm"))
            if unit_x is None or unit_y is None:
                return None
            return _checked(float(y) * unit_y, float(x) * unit_x, "OME")  # type: ignore[arg-type]
    return None


def _aperio(description: str) -> PixelSize | None:
    found = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", description or "")
    return _checked(float(found.group(1)), float(found.group(1)), "Aperio") if found else None


def _imagej(metadata: dict | None, page: tifffile.TiffPage) -> PixelSize | None:
    unit = UNITS.get(str((metadata or {}).get("unit", "")).strip())
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if unit is None or xres is None or yres is None:
        return None
    x, y = _per_pixel(xres.value), _per_pixel(yres.value)
    return _checked(y * unit, x * unit, "ImageJ") if x and y else None


def _resolution(page: tifffile.TiffPage) -> PixelSize | None:
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    unit = page.tags.get("ResolutionUnit")
    if xres is None or yres is None or unit is None:
        return None
    per_unit = {2: 25_400.0, 3: 10_000.0}.get(int(unit.value))  # inch, centimetre
    x, y = _per_pixel(xres.value), _per_pixel(yres.value)
    if per_unit is None or not x or not y:
        return None
    return _checked(y * per_unit, x * per_unit, "TIFF resolution")


def _per_pixel(rational: tuple[int, int]) -> float:
    """Units per pixel from a resolution rational (pixels per unit); 0 when it is 0."""
    numerator, denominator = rational
    return denominator / numerator if numerator else 0.0


def _checked(y: float, x: float, source: str) -> PixelSize | None:
    if not (0 < y <= LARGEST_PIXEL_UM and 0 < x <= LARGEST_PIXEL_UM):
        return None
    return PixelSize(y, x, source)
