"""One image or stack in, labels out.

Normalise, tile, run at a scale, estimate the diameter, masks by blocks, 3-D volumes.
"""

