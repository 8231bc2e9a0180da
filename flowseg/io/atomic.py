"""Write a file all at once or not at all: a temporary file beside it, renamed into place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Characters of the destination's name kept in its temporary file's: with the dot, the random part
# and ".tmp" it stays within the file systems' 255 (a 250-character label name did not).
TEMP_NAME = 100


def write_atomic(path: str | os.PathLike[str], content: bytes | Callable[[Path], Any]) -> Path:
    """Write a file so that no reader and no crash ever sees it half-written.

    The content goes to a uniquely named temporary file in the destination's folder, which is
    then renamed over ``path``; on any failure the temporary file is removed.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder is created if needed.
    content : bytes, or callable
        The bytes, or a function that writes the file at the path it is given.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", b"hi").read_bytes(), sorted(p.name for p in folder.iterdir())
    (b'hi', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name[:TEMP_NAME]}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
