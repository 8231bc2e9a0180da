"""The network and where it runs.

FlowUNet and its checkpoints, the device, precision and runtime (torch or ONNX Runtime).
"""

