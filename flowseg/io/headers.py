"""Image file headers: height and width without decoding, and a check that the data are all there.

A leaf of the package (numpy-free): :mod:`flowseg.io` asks it before decoding anything, so that a
file claiming a huge size, or cut short, is refused at no cost.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import tifffile

from flowseg.errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Read an image's height and width from its header, and check that its data are complete.

    Nothing is decoded, so a file that claims a huge size costs nothing to refuse.

    Parameters
    ----------
    path : str or PathLike
        A png, bmp, jpg/jpeg or tif/tiff file.

    Returns
    -------
    height, width : int

    Raises
    ------
    ValueError
        If the header cannot be read, or the file is shorter than its header says (truncated);
        the message names the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            return _tiff_size(path)
        with open(path, "rb") as stream:
            head = stream.read(1 << 16)
            stream.seek(max(0, path.stat().st_size - 1024))
            tail = stream.read()
        if suffix in (".jpg", ".jpeg"):
            return _jpeg_size(path, tail, path.stat().st_size)
        reader = {".png": _png_size, ".bmp": _bmp_size}[suffix]
        return reader(head, tail, path.stat().st_size)
    except (ValueError, OSError, IndexError, struct.error, tifffile.TiffFileError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot read the header ({reason})") from None


def decoded_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes the decoder will produce for an image file, from its header (nothing decoded).

    PNG: height x width x channels (palettes count as RGB) x bytes a sample; BMP: bytes a pixel;
    JPEG: three samples a pixel at most; TIFF: every page of its first series (a multi-page TIFF
    read as one image decodes them all) x samples x bytes a sample.

    Parameters
    ----------
    path : str or PathLike
        A file :func:`image_size` has read.

    Returns
    -------
    nbytes : int
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            count = 1
            for n in series.shape:
                count *= int(n)
            return count * series.dtype.itemsize
    height, width = image_size(path)
    if suffix == ".png":
        with open(path, "rb") as stream:
            head = stream.read(26)
        depth, colour = head[24], head[25]
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4)
        return height * width * channels * max(1, depth // 8)
    if suffix == ".bmp":
        with open(path, "rb") as stream:
            bits = int.from_bytes(stream.read(30)[28:30], "little")
        return height * width * max(1, bits // 8)
    return height * width * 3


def _png_size(head: bytes, tail: bytes, size: int) -> tuple[int, int]:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise InputError("not a PNG file (no PNG signature and IHDR)")
    if b"IEND" not in tail:
        raise InputError("truncated PNG (no IEND chunk at the end)")
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def _bmp_size(head: bytes, tail: bytes, size: int) -> tuple[int, int]:
    if head[:2] != b"BM" or len(head) < 30:
        raise InputError("not a BMP file (no BM signature)")
    offset = int.from_bytes(head[10:14], "little")
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = abs(int.from_bytes(head[22:26], "little", signed=True))
    bits = int.from_bytes(head[28:30], "little")
    stride = (abs(width) * bits + 31) // 32 * 4
    compressed = int.from_bytes(head[30:34], "little") not in (0, 3)
    if not compressed and offset + stride * height > size:
        raise InputError(f"truncated BMP ({size} bytes, header says {offset + stride * height})")
    return height, abs(width)


def _jpeg_size(path: Path, tail: bytes, size: int) -> tuple[int, int]:
    """Walk the JPEG's segments to its frame header, seeking past metadata of any length.

    Fill bytes (0xFF repeated) may precede a marker, and an APPn block (EXIF, ICC, XMP) may be
    far longer than a buffer: libjpeg reads both, and so does this.
    """
    if b"\xff\xd9" not in tail:
        raise InputError("truncated JPEG (no end-of-image marker)")
    with open(path, "rb") as stream:
        if stream.read(2) != b"\xff\xd8":
            raise InputError("not a JPEG file (no start-of-image marker)")
        while True:
            byte = stream.read(1)
            if byte != b"\xff":
                raise InputError("corrupt JPEG header" if byte else "no JPEG frame header")
            marker = stream.read(1)
            while marker == b"\xff":  # fill bytes before the marker
                marker = stream.read(1)
            if not marker:
                raise InputError("no JPEG frame header")
            code = marker[0]
            if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
                continue
            length = int.from_bytes(stream.read(2), "big")
            if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):  # start of frame
                frame = stream.read(5)
                return int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            if length < 2:
                raise InputError("corrupt JPEG header")
            stream.seek(length - 2, os.SEEK_CUR)


def _tiff_size(path: Path) -> tuple[int, int]:
    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        if not tif.series or not tif.pages:
            raise InputError("not a readable TIFF (no image in it)")
        series = tif.series[0]
        shape = dict(zip(series.axes, series.shape, strict=True))
        tif.pages.useframes = True  # offsets only: 2,048 pages in 0.16 s, not 0.43
        for page in tif.pages:
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                if offset + count > size:
                    raise InputError(f"truncated TIFF (data run past the end of the "
                                     f"{size}-byte file)")
        height = shape.get("Y", series.shape[-2] if len(series.shape) > 1 else 1)
        width = shape.get("X", series.shape[-1])
        return int(height), int(width)
