"""The training loss: flows' squared error and the cell probability's cross-entropy.

loss = MSE(flow outputs, FLOW_SCALE x target flows) / 2 + BCE-with-logits(cellprob, foreground),
as cellpose trains, optionally with the flows' squared error weighed more where two cells touch
(``TrainConfig.boundary_weight``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from flowseg.representation.flows import FLOW_SCALE

# Where two cells touch, their unit flows point away from each other: the target's divergence
# (central differences) is about 1 there, 0.5 at a cell's edge on the background and negative at
# its centre (dsb2018 labels of ../shared: > 0.75 marks 290 of 375 touching-boundary pixels and
# no outer edge). The band around such pixels, this many pixels either side, is weighed more.
TOUCH_DIVERGENCE = 0.75


TOUCH_BAND = 2


def flow_loss(output: torch.Tensor, target: torch.Tensor,
              boundary_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the flow and cell-probability parts of the loss.

    Parameters
    ----------
    output : (B, 3, H, W) tensor
        Network output: ``dy, dx`` in ``FLOW_SCALE`` units and the logit.
    target : (B, 3, H, W) tensor
        Unit ``dy, dx`` and the foreground (0 or 1).
    boundary_weight : float
        The squared flow error in :func:`touching_band` counts ``1 + boundary_weight`` times.

    Returns
    -------
    flow, prob : tensor
        ``MSE(output flows, FLOW_SCALE * target flows) / 2`` (weighted) and the BCE of the logit.
    """
    error = (output[:, :2].float() - FLOW_SCALE * target[:, :2]) ** 2
    if boundary_weight > 0:
        error = error * (1 + boundary_weight * touching_band(target[:, :2]))[:, None]
    flow = error.mean() / 2
    prob = F.binary_cross_entropy_with_logits(output[:, 2].float(), target[:, 2])
    return flow, prob


def touching_band(flows: torch.Tensor) -> torch.Tensor:
    """Return 1 within ``TOUCH_BAND`` pixels of where two cells touch, 0 elsewhere.

    Parameters
    ----------
    flows : (B, 2, H, W) tensor
        Unit target flows ``dy, dx``.

    Returns
    -------
    band : (B, H, W) tensor of 0.0 and 1.0
    """
    divergence = torch.zeros_like(flows[:, 0])
    divergence[:, 1:-1] += (flows[:, 0, 2:] - flows[:, 0, :-2]) / 2
    divergence[:, :, 1:-1] += (flows[:, 1, :, 2:] - flows[:, 1, :, :-2]) / 2
    touching = (divergence > TOUCH_DIVERGENCE).float()[:, None]
    return F.max_pool2d(touching, 2 * TOUCH_BAND + 1, stride=1, padding=TOUCH_BAND)[:, 0]
