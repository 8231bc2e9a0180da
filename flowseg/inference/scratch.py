"""Arrays in scratch files, mapped only while in use: resident memory that does not grow with them.

A z-stack's network input, its combined flows and its labels at the network's scale grow with the
stack (6, 16 and 4 bytes a voxel); :class:`ScratchArray` keeps each in an anonymous file (in
``TMPDIR``, removed by the system when closed, even after a crash), mapped into memory. The pages
touched stay in the system's page cache, not in the process: :meth:`ScratchArray.release` unmaps
them after each slab of planes, so the process's resident set holds one slab, not the stack.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError

# Reads and writes through a ScratchArray unmap its pages after about this many bytes.
RELEASE_BYTES = 64 << 20


class ScratchArray:
    """A zero-filled array of ``shape`` and ``dtype`` in an anonymous scratch file.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype
    folder : str, optional
        Where the file goes; ``tempfile.gettempdir()`` (``TMPDIR``) when omitted.

    Attributes
    ----------
    array : ndarray
        The file's contents as an array (writable); slicing it maps only what is touched.

    Reading or writing through the object itself (``scratch[key]``) releases the pages every
    ``RELEASE_BYTES``; a slab read across the last axis touches every page of the span, so
    callers release after such slabs themselves.

    Raises
    ------
    ValueError
        If the folder has no room for the array (one line naming the folder and the size):
        the space is reserved at once, so that a full disk fails here, not with a bus error
        half-way through.
    """

    def __init__(self, shape: tuple[int, ...], dtype: npt.DTypeLike, *,
                 folder: str | None = None) -> None:
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        self._map: mmap.mmap | None = None
        self._touched = 0
        if size == 0:
            self.array = np.zeros(shape, dtype)
            return
        where = folder or tempfile.gettempdir()
        self._file = tempfile.TemporaryFile(dir=where)
        try:
            os.posix_fallocate(self._file.fileno(), 0, size)
        except OSError as err:
            self._file.close()
            raise InputError(f"{where}: no room for {size / 1e9:.1f} GB of scratch space "
                             f"({err.strerror}); set TMPDIR to a folder with room") from None
        # The map holds its own descriptor: the file lives as long as the map, and no longer.
        with self._file:
            self._map = mmap.mmap(self._file.fileno(), size)
        self.array = np.frombuffer(self._map, dtype).reshape(shape)

    def release(self) -> None:
        """Unmap the pages touched so far: they stay in the file (and page cache), not in RSS."""
        self._touched = 0
        if self._map is not None:
            self._map.madvise(mmap.MADV_DONTNEED)

    def __getitem__(self, key: Any) -> Any:
        part = np.array(self.array[key])  # a copy: the pages may be released under a view
        self._count(part.nbytes)
        return part

    def __setitem__(self, key: Any, value: Any) -> None:
        self.array[key] = value
        self._count(np.asarray(value).nbytes)

    def _count(self, nbytes: int) -> None:
        self._touched += nbytes
        if self._touched >= RELEASE_BYTES:
            self.release()

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return self.array.shape

    @property
    def ndim(self) -> int:
        """The array's number of axes."""
        return self.array.ndim
