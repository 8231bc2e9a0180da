"""The one error type for input that flowseg cannot use.

Every check of a file, folder, array, setting or environment raises :class:`InputError` with one
line naming what was wrong and why; the command line prints that line and exits 1, while any other
exception is a bug and keeps its traceback (``-v``). It subclasses ``ValueError``, so code that
catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class InputError(ValueError):
    """A file, folder, array, setting or environment that flowseg cannot use.

    Examples
    --------
    >>> try:
    ...     raise InputError("cells.tif: empty file")
    ... except ValueError as err:
    ...     print(err)
    cells.tif: empty file
    """
