"""Labels <-> flow fields <-> masks, in 2-D and 3-D.

numpy and numba kernels only (no torch): labels to flows, flow following, mask clean-up.
"""

