"""Which files: the images of a folder, a file or a glob; image and label pairs; output names.

Images are png, bmp, jpg/jpeg or tif/tiff files; labels are ``<name>_label.tiff`` beside them in
the challenge's layout (``images/`` and ``labels/``). Reading them is :mod:`flowseg.io`'s job.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

from flowseg.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
LABEL_SUFFIX = "_label.tiff"
# An OME-Zarr image is a folder: ``slide.ome.zarr`` (flowseg's own ``*_labels.ome.zarr`` outputs
# are not inputs).
ZARR_SUFFIX = ".zarr"
# predict's own outputs that are image files: beside their image (-o == -i), never inputs.
OUTPUT_IMAGE_SUFFIXES = ("_overlay.png", "_flows.tiff")


def find_pairs(
    images_dir: str | os.PathLike[str], labels_dir: str | os.PathLike[str]
) -> list[tuple[Path, Path]]:
    """Match ``<name>.<ext>`` images to ``<name>_label.tiff`` label files.

    Parameters
    ----------
    images_dir, labels_dir : str or PathLike
        Folders of images and of labels (they may be the same folder).

    Returns
    -------
    pairs : list of (Path, Path)
        ``(image, labels)`` sorted by name.

    Raises
    ------
    FileNotFoundError
        If a folder does not exist.
    ValueError
        If no image is found, two images share a name, or an image has no labels or labels have
        no image; the message names the unmatched files.
    """
    images = list_images(images_dir)
    label_files = {p.name[: -len(LABEL_SUFFIX)]: p for p in _list_label_files(Path(labels_dir))}
    if not images:
        raise InputError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = [p.name for p in images if p.stem not in label_files]
    orphans = sorted(set(label_files) - {p.stem for p in images})
    if missing or orphans:
        parts = []
        if missing:
            parts.append(f"no {LABEL_SUFFIX} in {labels_dir} for {_few(missing)}")
        if orphans:
            names = [label_files[n].name for n in orphans]
            parts.append(f"no image in {images_dir} for {_few(names)}")
        raise InputError("; ".join(parts))
    return [(p, label_files[p.stem]) for p in images]


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """List the image files of a folder (not its label files), sorted by name.

    Parameters
    ----------
    folder : str or PathLike

    Returns
    -------
    images : list of Path

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If two images share a name (``a.png`` and ``a.tif``): their outputs would collide.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    images = sorted(
        p for p in folder.iterdir()
        if (p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
            and not p.name.endswith(LABEL_SUFFIX)) or _is_zarr_image(p)
    )
    images = [p for p in images if p not in _outputs_among(images)]
    stems = [p.stem for p in images]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise InputError(f"{folder}: several images share the name {_few(twins)}; "
                         "their label files would collide")
    return images


def resolve_inputs(spec: str | os.PathLike[str]) -> tuple[list[Path], list[str], list[str]]:
    """Find the images a user meant: a folder's, one file, or a glob pattern's matches.

    Parameters
    ----------
    spec : str or PathLike
        A folder, an image file, or a pattern such as ``data/*.tif``.

    Returns
    -------
    images : list of Path
        Sorted by name.
    ignored : list of str
        Names of the other files found (not images, label files, broken links, outputs of an
        earlier run written beside their images), to be reported.
    clashes : list of str
        ``file: reason`` for images that share a name with another (``a.tif`` beside
        ``a.png``): left out, since their label files would collide; the others go on.

    Raises
    ------
    FileNotFoundError
        If nothing matches.
    PermissionError
        If a folder cannot be listed.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir() and path.suffix.lower() == ZARR_SUFFIX:  # one OME-Zarr image
        return [path], [], []
    if path.is_dir():
        candidates = sorted(path.iterdir())
    elif path.is_file():
        candidates = [path]
    elif any(c in text for c in "*?["):
        candidates = sorted(Path(p) for p in glob.glob(text))
        if not candidates:
            raise FileNotFoundError(f"{text}: no file matches")
    else:
        raise FileNotFoundError(f"{text}: no such file or folder")
    images, ignored = [], []
    for p in candidates:
        is_image = p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(LABEL_SUFFIX)
        if _is_zarr_image(p):
            images.append(p)
            continue
        if p.is_dir() or (p.name.startswith(".") and not is_image):
            continue
        if p.name.startswith("."):  # .name.png: hidden, perhaps a temporary copy; say so
            ignored.append(f"{p.name} (a hidden file)")
        elif is_image and (p.is_file() or p.is_symlink()):
            # A broken link named as an image is an input that cannot be read: it fails by
            # name (and counts in the exit code), it is not passed over.
            images.append(p)
        else:
            reason = ("a label file" if p.name.endswith(LABEL_SUFFIX) else
                      "a broken link" if p.is_symlink() and not p.exists() else "not an image")
            ignored.append(f"{p.name} ({reason})")
    outputs = _outputs_among(images)
    ignored += [f"{p.name} (an output of flowseg)" for p in outputs]
    images = [p for p in images if p not in outputs]
    stems = [p.stem for p in images]
    twins = {s for s in stems if stems.count(s) > 1}
    clashes = [f"{p.name}: shares the name {p.stem} with "
               f"{', '.join(q.name for q in images if q.stem == p.stem and q != p)} (their "
               "label files would collide; rename one)" for p in images if p.stem in twins]
    return [p for p in images if p.stem not in twins], ignored, clashes


def _outputs_among(images: list[Path]) -> list[Path]:
    """Return the overlays and flows predict wrote beside another of these images (-o == -i)."""
    stems = {(p.parent, p.stem) for p in images}
    return [p for p in images for suffix in OUTPUT_IMAGE_SUFFIXES
            if p.name.endswith(suffix) and (p.parent, p.name[: -len(suffix)]) in stems]


def _is_zarr_image(path: Path) -> bool:
    return (path.suffix.lower() == ZARR_SUFFIX and path.is_dir() and not path.name.startswith(".")
            and not path.name.endswith("_labels.ome.zarr"))


def _list_label_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(LABEL_SUFFIX))


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def label_path(image_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Return where the labels of an image go: ``<out_dir>/<name>_label.tiff``.

    Parameters
    ----------
    image_path : str or PathLike
    out_dir : str or PathLike

    Returns
    -------
    path : Path

    Examples
    --------
    >>> label_path("in/cell_01.png", "out").as_posix()
    'out/cell_01_label.tiff'
    """
    return Path(out_dir) / f"{Path(image_path).stem}{LABEL_SUFFIX}"
