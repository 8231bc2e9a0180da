"""What faces the user.

CLI, folder predict, evaluate, measurements, Dask whole slides, the napari widget.
"""

