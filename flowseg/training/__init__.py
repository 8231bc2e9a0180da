"""Training the network.

Datasets with cached targets, augmentation, loss, the resumable loop, synthetic/ images.
"""

