"""Pictures in and out: images, z-stacks and labels.

Headers are checked before decoding; outputs are written atomically. No torch here.
"""



from flowseg.io.atomic import write_atomic
from flowseg.io.images import MAX_CHANNELS, MAX_PIXELS, read_image, read_pixels, read_volume
from flowseg.io.labels import as_labels, read_description, read_labels, write_labels, write_labels_tiled

__all__ = ["MAX_CHANNELS", "MAX_PIXELS", "as_labels", "read_description", "read_image",
           "read_labels", "read_pixels", "read_volume", "write_atomic", "write_labels",
           "write_labels_tiled"]
