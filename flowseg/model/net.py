"""The network: a compact residual UNet that predicts flows and cell probability.

Layout (``NetConfig`` defaults): a stride-2 stem takes the image to half resolution, where the
encoder works at widths 16, 32, 64, 128, 256 (one residual block per level, a stride-2 convolution
between levels); the decoder comes back up with additive skips. Nothing is pooled over the whole
input (``NetConfig.style`` can add cellpose's global style vector back), so a pixel's output
depends only on its neighbourhood, not on where a tile was cut. A lean full-resolution
path (8 channels) meets the upsampled decoder at the end, so that boundaries keep pixel precision
while almost all the work happens at half resolution or below.

Output ``(B, 3, H, W)``: ``dy, dx`` in ``FLOW_SCALE`` units and the cell-probability logit. H and W
must be multiples of ``net.stride`` (pad first).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from flowseg.errors import InputError
from flowseg.model.device import resolve_device

CHECKPOINT_FORMAT = "flowseg-net"
OUT_CHANNELS = 3  # dy, dx, cell-probability logit


@dataclass(frozen=True)
class NetConfig:
    """Shape of a :class:`FlowUNet`.

    Attributes
    ----------
    in_channels : int
        Image channels (3 after ``flowseg.inference.normalize.to_three_channels``).
    widths : tuple of int
        Channels of the encoder levels, at 1/2, 1/4, ... of the input resolution.
    full_res : int
        Channels of the full-resolution path.
    blocks : int or tuple of int
        Residual blocks per encoder level, the same for all or one per level (the decoder has one
        per level).
    skip : {"add", "concat"}
        How encoder features join the decoder.
    style : bool
        Bias each decoder level by a projection of the globally pooled deepest features (as
        cellpose does). Off by default: it makes a tile's output depend on the rest of the tile,
        so labels change with the tiling, and at equal training it bought no accuracy
        (benchmarks/compare_style.py).
    """

    in_channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    full_res: int = 8
    blocks: int | tuple[int, ...] = 1
    skip: str = "add"
    style: bool = False

    def __post_init__(self) -> None:
        if self.skip not in ("add", "concat"):
            raise InputError(f"skip must be 'add' or 'concat', got {self.skip!r}")
        if not self.widths or min(self.widths) < 1 or self.in_channels < 1 or \
                not all(isinstance(b, int) for b in self.level_blocks) or \
                len(self.level_blocks) != len(self.widths) or min(self.level_blocks) < 1:
            raise InputError(f"invalid network shape: {self}")

    @property
    def level_blocks(self) -> tuple[int, ...]:
        """Residual blocks of each encoder level."""
        if isinstance(self.blocks, tuple):
            return self.blocks
        return (self.blocks,) * len(self.widths)


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Two 3 x 3 convolutions with batch norm, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.relu(x + self.body(x))


class FlowUNet(nn.Module):
    """Compact residual UNet: image ``(B, C, H, W)`` to ``(B, 3, H, W)`` flows and logit.

    Parameters
    ----------
    config : NetConfig
    """

    def __init__(self, config: NetConfig = NetConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.full = _conv_bn(config.in_channels, config.full_res)
        self.stem = _conv_bn(config.in_channels, w[0], stride=2)
        self.down = nn.ModuleList(
            [nn.Identity()] + [_conv_bn(w[i - 1], w[i], stride=2) for i in range(1, len(w))])
        self.encode = nn.ModuleList(
            [nn.Sequential(*[ResBlock(c) for _ in range(n)])
             for c, n in zip(w, config.level_blocks, strict=True)])
        self.lift = nn.ModuleList([nn.Conv2d(w[i + 1], w[i], 1) for i in range(len(w) - 1)])
        self.merge = nn.ModuleList(
            [nn.Conv2d(2 * w[i], w[i], 1) if config.skip == "concat" else nn.Identity()
             for i in range(len(w) - 1)])
        self.decode = nn.ModuleList([ResBlock(w[i]) for i in range(len(w) - 1)])
        self.styles = nn.ModuleList(
            [nn.Linear(w[-1], w[i]) for i in range(len(w) - 1)] if config.style else [])
        self.to_full = nn.Conv2d(w[0], config.full_res, 1)
        self.head = nn.Sequential(_conv_bn(2 * config.full_res, 2 * config.full_res),
                                  nn.Conv2d(2 * config.full_res, OUT_CHANNELS, 1))
        self.metadata: dict[str, Any] = {}

    @property
    def in_channels(self) -> int:
        """Image channels the network takes."""
        return self.config.in_channels

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this."""
        return int(2 ** len(self.config.widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self._decode(x, self._encode(x))

    def forward_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network and also return its encoder's features averaged over the input.

        Parameters
        ----------
        x : (B, C, H, W) tensor

        Returns
        -------
        output : (B, 3, H, W) tensor
            As ``forward``.
        pooled : (B, sum(widths)) tensor
            The mean of every channel of every encoder level (what flowseg.inference.sizehead reads the
            cell size from).
        """
        skips = self._encode(x)
        pooled = torch.cat([s.mean(dim=(2, 3)) for s in skips], dim=1)
        return self._decode(x, skips), pooled

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        y = self.stem(x)
        for down, encode in zip(self.down, self.encode, strict=True):
            y = encode(down(y))
            skips.append(y)
        return skips

    def _decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        y = skips[-1]
        style = None
        if self.config.style:
            style = F.normalize(y.mean(dim=(2, 3)), dim=1)
        for i in range(len(skips) - 2, -1, -1):
            y = self.lift[i](F.interpolate(y, scale_factor=2.0, mode="nearest"))
            y = y + skips[i] if self.config.skip == "add" else self.merge[i](
                torch.cat([y, skips[i]], dim=1))
            if style is not None:
                y = y + self.styles[i](style)[:, :, None, None]
            y = self.decode[i](y)
        y = F.interpolate(self.to_full(y), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.head(torch.cat([y, self.full(x)], dim=1))


def deepened(net: FlowUNet, blocks: int | tuple[int, ...]) -> FlowUNet:
    """Return a copy of ``net`` with more residual blocks per encoder level, computing the same.

    Each added block's last batch norm starts at zero scale and shift, so the block adds nothing
    to its input (which is a ReLU's output, so the block's own ReLU leaves it unchanged): the copy
    gives the same output as ``net`` until training moves those weights.

    Parameters
    ----------
    net : FlowUNet
    blocks : int or tuple of int
        Blocks per level, none fewer than ``net`` has.

    Returns
    -------
    net : FlowUNet
        On the CPU, in eval mode, with ``net``'s metadata.

    Raises
    ------
    ValueError
        If a level would lose blocks.

    Examples
    --------
    >>> net = FlowUNet().eval()
    >>> deeper = deepened(net, (1, 1, 2, 2, 2))
    >>> x = torch.rand(1, 3, 64, 64)
    >>> bool(torch.allclose(net(x), deeper(x), atol=1e-5))
    True
    """
    from dataclasses import replace

    config = replace(net.config, blocks=blocks)
    old, new = net.config.level_blocks, config.level_blocks
    if any(b < a for a, b in zip(old, new, strict=True)):
        raise InputError(f"cannot deepen a network with blocks {old} to {new}: a level would "
                         f"lose blocks")
    deeper = FlowUNet(config)
    state = deeper.state_dict()
    state.update({k: v.float() if v.is_floating_point() else v
                  for k, v in net.state_dict().items()})
    deeper.load_state_dict(state)
    for level, (a, b) in enumerate(zip(old, new, strict=True)):
        for block in list(deeper.encode[level])[a:b]:
            nn.init.zeros_(block.body[-1].weight)
            nn.init.zeros_(block.body[-1].bias)
    deeper.metadata = dict(net.metadata)
    return deeper.eval()


def count_parameters(net: nn.Module) -> int:
    """Return the number of trainable parameters.

    Parameters
    ----------
    net : torch.nn.Module

    Returns
    -------
    count : int

    Examples
    --------
    >>> 1_000_000 < count_parameters(FlowUNet()) < 4_000_000
    True
    """
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def save_net(
    net: FlowUNet, path: str | os.PathLike[str], *, half: bool = False, **metadata: Any
) -> Path:
    """Save a self-describing checkpoint, atomically.

    Parameters
    ----------
    net : FlowUNet
    path : str or PathLike
    half : bool
        Store floating-point weights as float16 (half the size; :func:`load_net` restores
        float32).
    **metadata
        Saved beside the weights and restored as ``net.metadata`` (thresholds, normalisation,
        a summary of the training data, ...), or training state (optimizer, scheduler, random
        states) that :func:`load_net` leaves out; values must load with ``weights_only=True``
        (plain Python data and tensors).

    Returns
    -------
    path : Path
    """
    from flowseg import __version__

    weights = {k: v.half() if half and v.is_floating_point() else v
               for k, v in net.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "flowseg_version": __version__,
               "net_config": asdict(net.config), "state_dict": weights,
               **net.metadata, **metadata}
    return save_atomic(payload, path)


def save_atomic(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``torch.save(payload)`` to a temporary file and rename it over ``path``.

    Parameters
    ----------
    payload : dict
    path : str or PathLike

    Returns
    -------
    path : Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a flowseg checkpoint's contents on the CPU, checking that it is one.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    checkpoint : dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a flowseg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: the file is not ours
        raise InputError(f"{path}: not a flowseg checkpoint ({type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a flowseg checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    return payload


def load_net(path: str | os.PathLike[str]) -> FlowUNet:
    """Rebuild a network from a checkpoint, without being told its shape.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save_net` or by training.

    Returns
    -------
    net : FlowUNet
        On the CPU, in eval mode; ``net.metadata`` holds the rest of the checkpoint
        (thresholds, normalisation, training summary, flowseg version).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a flowseg checkpoint or its weights do not fit its configuration.
    """
    payload = read_checkpoint(path)
    net = FlowUNet(_stored_config(payload.get("net_config"), path))
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise InputError(f"{path}: weights do not fit the saved network shape") from err
    net.metadata = {k: v for k, v in payload.items()
                    if k not in ("format", "net_config", "state_dict", "optimizer", "scheduler",
                                 "rng")}
    return net.eval()


# A stored network wider or deeper than this is no flowseg model (the bundled one: widths up to
# 256, 5 levels): building it would take the memory before any weight is checked.
LARGEST_WIDTH, DEEPEST = 4096, 8


def _stored_config(raw: Any, path: str | os.PathLike[str]) -> NetConfig:
    """Rebuild a checkpoint's NetConfig, refusing one missing, of unknown fields, or huge."""
    fields = set(NetConfig.__dataclass_fields__)
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: the checkpoint holds no network configuration")
    unknown = sorted(set(map(str, raw)) - fields)
    if unknown:
        raise InputError(f"{path}: the stored network configuration has unknown fields "
                         f"{', '.join(unknown[:5])}")
    config = dict(raw)
    try:
        config["widths"] = tuple(int(w) for w in config.get("widths", NetConfig.widths))
        for name in ("in_channels", "full_res"):
            if name in config:
                config[name] = int(config[name])
        if isinstance(config.get("blocks"), list | tuple):
            config["blocks"] = tuple(int(b) for b in config["blocks"])
        elif "blocks" in config:
            config["blocks"] = int(config["blocks"])
    except (TypeError, ValueError):
        raise InputError(f"{path}: the stored network configuration is not numbers") from None
    sizes = (*config["widths"], config.get("in_channels", 3), config.get("full_res", 8))
    blocks = config.get("blocks", 1)
    if len(config["widths"]) > DEEPEST or max(sizes) > LARGEST_WIDTH or \
            max(blocks if isinstance(blocks, tuple) else (blocks,), default=1) > DEEPEST:
        raise InputError(f"{path}: the stored network is larger than any flowseg model "
                         f"(widths {config['widths'][:8]}, blocks {str(blocks)[:40]})")
    try:
        return NetConfig(**config)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto`` to CUDA when available, else the CPU, as a torch device.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"}

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If CUDA is asked for and not available, or the name is unknown.
    """
    return torch.device(resolve_device(name))
