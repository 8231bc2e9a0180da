"""One file that carries a training's real images to another machine, within what travels there.

    python scripts/train_default_model.py --pack training-pack.zip      # here: write it
    python scripts/train_default_model.py --shared training-pack.zip    # there: train from it

The pack holds what scripts/train_default_model.py reads from ../shared: the training split of
data_real (never its validation tenth, scripts/real_data.py), data/ as it is, and the planes of
data3d's stack that training reads (not those benchmarks/bench_accuracy.py holds out). Synthetic
images are not packed: the script draws them from fixed seeds wherever it runs. The targets are
not packed either: flows are recomputed from the labels there (they are larger than the images).

A lent GPU machine receives the working tree and the paths carried with it, 64 MiB in all: the
pack must fit in what the checkout's own files leave (:func:`travel_budget`; the tree was 19 MiB
when this was written). Every image is stored as a TIFF (lossless JPEG XL, through imagecodecs:
0.6x the bytes of LZMA with a predictor on these images) holding only the channels it has (grey
saved as RGB becomes grey; png alpha is dropped on reading anyway), so that what the network takes
from an 8-bit image (:func:`flowseg.inference.normalize.prepare_image`) is the same to the bit.
Images of more than 8 bits (Usiigaci's 16-bit phase contrast: some 40,000 distinct values each,
noise in the low bits that no lossless coder removes: 81 MiB losslessly in all) are stored in
steps of 1/``STEPS`` of their 1st-99th percentile range: the network's input moves by 0.006 RMS
(at most 0.016), under half of the images' own pixel noise (median 0.015 of that range), and the
bundled model finds 1,088 of their 1,375 training cells from the stored images against 1,091 from
the originals (benchmarks/RESULTS.md). Labels are stored losslessly. The pack is a zip (stored:
the files are compressed already) of those files and ``manifest.json`` (origin, checksum, and
each image's step and largest change).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import real_data
import tifffile

from flowseg.errors import InputError
from flowseg.inference.normalize import channel_ranges, prepare_image
from flowseg.io import read_image, read_labels
from flowseg.io.atomic import write_atomic
from flowseg.io.files import find_pairs

TRAVEL = 64 * 2**20  # what travels to a lent GPU machine: working tree and carried paths
STEPS = 64  # quantisation steps across an image's 1st-99th percentile range (> 8-bit images)
MAX_CHANGE = 0.02  # largest change of the normalised network input a stored image may make
MANIFEST = "manifest.json"


def pack_files(shared: Path) -> list[tuple[Path, Path, str]]:
    """The files a training reads from ``shared``: (path, name in the pack, kind)."""
    files: list[tuple[Path, Path, str]] = []
    for folder, kind in (("data", "raw"), ("data3d", "planes")):
        root = shared / folder
        if (root / "images").is_dir():
            for image, label in find_pairs(root / "images", root / "labels"):
                files += [(image, Path(folder) / "images" / image.name, kind),
                          (label, Path(folder) / "labels" / label.name, kind)]
    for source, _, image, label in real_data.real_pairs("train"):
        base = Path("data_real") / source
        files += [(image, base / "images" / f"{image.stem}.tif", "image"),
                  (label, base / "labels" / label.name, "labels")]
    return files


def travel_budget(repo: Path) -> int:
    """Bytes left for the pack beside ``repo``'s working tree (what git tracks or would add)."""
    try:
        listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return TRAVEL  # not a checkout: nothing else travels
    names = [repo / n for n in listed.decode().split("\0") if n]
    return TRAVEL - sum(p.stat().st_size for p in names if p.is_file() and not p.is_symlink())


def encode_image(path: Path) -> tuple[bytes, dict[str, object]]:
    """A real image as a TIFF of its own channels, > 8-bit images quantised; and its record."""
    image = read_image(path)  # float32, the values unchanged
    kept = image[:1] if all(np.array_equal(image[0], c) for c in image[1:]) else image
    step = None
    if np.array_equal(kept, np.rint(kept)) and kept.min() >= 0 and kept.max() < 256:
        kept = kept.astype(np.uint8)  # an 8-bit image: stored as it is
    else:
        ranges = np.array(channel_ranges(kept), np.float64)
        spans = ranges[:, 1] - ranges[:, 0]
        spans = spans[spans > 0]
        step = float(spans.min()) / STEPS if spans.size else 1.0
        levels = np.rint((kept.astype(np.float64) - float(kept.min())) / step)
        if levels.max() < 2**16:
            kept = levels.astype(np.uint8 if levels.max() < 256 else np.uint16)
        else:  # too wide a range for 16 bits at that step: stored as it is
            step = None
    stream = io.BytesIO()
    if kept.shape[0] == 3:
        layout = {"data": np.moveaxis(kept, 0, -1), "photometric": "rgb"}
    else:
        layout = {"data": kept[0] if kept.shape[0] == 1 else kept, "photometric": "minisblack",
                  "planarconfig": "separate" if kept.shape[0] > 1 else None}
    tifffile.imwrite(stream, compression="jpegxl", compressionargs={"lossless": True}, **layout)
    stored = tifffile.imread(io.BytesIO(stream.getvalue()))
    stored = np.moveaxis(stored, -1, 0) if kept.shape[0] == 3 else stored.reshape(kept.shape)
    change = float(np.abs(prepare_image(stored) - prepare_image(image)).max())
    if change > MAX_CHANGE:
        raise InputError(f"{path}: storing it changes the network's input by {change:.4f} "
                         f"(at most {MAX_CHANGE})")
    return stream.getvalue(), {"shape": list(image.shape), "stored_channels": int(kept.shape[0]),
                               "step": step, "largest_change": round(change, 6)}


def encode_labels(labels: np.ndarray) -> bytes:
    """Labels (or a stack's planes) as a TIFF, losslessly (LZMA with a predictor)."""
    if labels.dtype.kind in "ui" and labels.max() < 2**16:
        labels = labels.astype(np.uint16)
    stream = io.BytesIO()
    tifffile.imwrite(stream, labels, compression="lzma", predictor=labels.dtype.kind in "ui")
    return stream.getvalue()


def write_pack(path: Path, shared: Path | None = None, *, planes: range | None = None,
               limit: int = TRAVEL) -> dict[str, object]:
    """Write the pack of ``shared`` (../shared by default) to ``path``, atomically; its summary.

    ``planes``: the planes of data3d's stack that training reads (all when None). ``limit``:
    the most bytes the pack may take (:func:`travel_budget`).

    Raises
    ------
    InputError
        If there is nothing to pack, or the pack would exceed ``limit`` (nothing is written).
    """
    if shared is not None:
        real_data.use_shared(shared)
    files = pack_files(real_data.SHARED)
    if not files:
        raise InputError(f"{real_data.SHARED}: no training images to pack")
    records: dict[str, object] = {}
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w", zipfile.ZIP_STORED) as archive:
        for origin, name, kind in files:
            record: dict[str, object] = {"origin": str(origin.relative_to(real_data.SHARED))}
            if kind == "image":
                data, extra = encode_image(origin)
                record.update(extra)
            elif kind == "labels":
                data = encode_labels(read_labels(origin))
            elif kind == "planes" and planes is not None:
                data = encode_labels(tifffile.imread(origin)[planes.start:planes.stop])
                record["planes"] = [planes.start, planes.stop]
            else:
                data = origin.read_bytes()
            record["sha256"] = hashlib.sha256(data).hexdigest()
            records[name.as_posix()] = record
            archive.writestr(_member(name.as_posix()), data)
        archive.writestr(_member(MANIFEST), json.dumps({"steps": STEPS, "files": records}),
                         compress_type=zipfile.ZIP_DEFLATED)
    size = payload.tell()
    if size > limit:
        raise InputError(f"{path}: the pack would be {size / 2**20:.1f} MiB, over the "
                         f"{limit / 2**20:.1f} MiB that may travel beside the working tree; "
                         "nothing written")
    write_atomic(path, payload.getvalue())
    images = [r for r in records.values() if isinstance(r, dict) and "shape" in r]
    return {"files": len(files), "bytes": size, "images": len(images),
            "quantised": sum(r["step"] is not None for r in images),
            "largest_change": max((float(r["largest_change"]) for r in images), default=0.0)}


def unpack(path: Path, folder: Path) -> Path:
    """Extract a pack into ``folder``, checksums checked, and return it (reused once there)."""
    if (folder / MANIFEST).is_file():
        return folder
    if folder.exists():
        raise InputError(f"{folder}: exists but holds no unpacked training pack; remove it first")
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    try:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(part)  # member names are made safe (no absolute paths, no "..")
        records = dict(json.loads((part / MANIFEST).read_text())["files"])
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as error:
        shutil.rmtree(part, ignore_errors=True)
        raise InputError(f"{path}: not a training pack ({error!r})") from None
    for name, record in records.items():
        if hashlib.sha256((part / name).read_bytes()).hexdigest() != record["sha256"]:
            shutil.rmtree(part)
            raise InputError(f"{path}: {name} does not match its checksum (a damaged copy)")
    part.rename(folder)
    return folder


def _member(name: str) -> zipfile.ZipInfo:
    """A member with a fixed date, so that the same files always make the same pack."""
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    return info
