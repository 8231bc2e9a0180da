"""Training: the loop and its resumable checkpoints.

The loss is :mod:`flowseg.training.loss`'s, validation (the challenge F1) is
:mod:`flowseg.training.validate`'s. AdamW with a linear warm-up and a cosine decay, mixed
precision on CUDA.

Runs are repeatable and resumable: every sample is drawn from ``(seed, epoch, position)`` alone,
and ``last.pt`` (written at every epoch end and every ``checkpoint_seconds``) holds the weights,
the optimizer, the scheduler, the position in the epoch and the random states, so that a run
killed at any point and resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from flowseg.errors import InputError
from flowseg.io import read_labels
from flowseg.model.execution import plan_execution
from flowseg.model.net import (
    FlowUNet,
    NetConfig,
    load_net,
    pick_device,
    read_checkpoint,
    save_atomic,
    save_net,
)
from flowseg.representation.masks import MaskConfig
from flowseg.training.dataset import (
    DataConfig,
    FlowDataset,
    discover_pairs,
    epoch_order,
)
from flowseg.training.loss import flow_loss
from flowseg.training.sizefit import refit_size_head
from flowseg.training.validate import automatic_f1, held_out_cells, span_mask, validate

log = logging.getLogger(__name__)

LOG_FIELDS = ("epoch", "step", "loss", "flow_loss", "prob_loss", "val_f1", "lr", "seconds")
# Peak learning rate when starting from trained weights (``flowseg train``'s default, from the
# bundled model): the from-scratch 2e-3 tore a trained model's flows apart in a short fine-tune
# (benchmarks/RESULTS.md, fine-tuning).
FINETUNE_LEARNING_RATE = 2e-4
# The warm-up lasts at least this many steps (but never more than a quarter of the run): a
# fine-tune of 40 steps at 5 % had one step of warm-up and took its first step at the full rate.
MIN_WARMUP_STEPS = 10
# With too few images for a validation set (fewer than 1 / val_fraction), every image trains on
# the first 80 % of its longer side and validates on the last 20 %: the guard that keeps a
# fine-tune from leaving the user's images worse than the weights it started from.
GUARD_SHARE = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes
    ----------
    epochs : int
    batch_size : int
    learning_rate : float
        Peak AdamW learning rate.
    weight_decay : float
    warmup_fraction : float
        Share of all steps spent ramping the learning rate up from zero (at least
        ``MIN_WARMUP_STEPS``, at most a quarter of the run).
    val_fraction : float
        Share of the pairs held out for validation, rounded down. With fewer than
        ``1 / val_fraction`` pairs every image trains, on all but the last ``GUARD_SHARE`` of its
        longer side, and validates on that last part; 0 trains on everything and validates on
        nothing.
    val_every : int
        Validate every this many epochs (and after the last).
    seed : int
    device : {"auto", "cpu", "cuda"}
    num_workers : int
        DataLoader worker processes.
    checkpoint_seconds : float
        Also write ``last.pt`` mid-epoch after this many seconds.
    boundary_weight : float
        Extra weight of the flow error in a band where two cells touch
        (:func:`~flowseg.training.loss.touching_band`): 0 weighs every pixel alike; w weighs the
        band 1 + w times.
    prob_weight : float
        Weight of the cell probability's cross-entropy against the flows' error (cellpose: 1).
    size_head : bool
        Refit the size head at the end on the training images at known rescalings
        (:func:`~flowseg.training.sizefit.refit_size_head`), so that the result keeps an
        automatic diameter of its own.
    """

    epochs: int = 100
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    val_fraction: float = 0.1
    val_every: int = 5
    seed: int = 0
    device: str = "auto"
    num_workers: int = 1
    checkpoint_seconds: float = 120.0
    boundary_weight: float = 0.0
    prob_weight: float = 1.0
    size_head: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0 or \
                not 0 <= self.val_fraction < 1 or self.val_every < 1 or self.num_workers < 0 or \
                not self.boundary_weight >= 0 or not self.prob_weight > 0:
            raise InputError(
                f"invalid training settings: epochs={self.epochs} (>= 1), batch_size="
                f"{self.batch_size} (>= 1), learning_rate={self.learning_rate} (> 0), "
                f"val_fraction={self.val_fraction} (0 to 1), val_every={self.val_every} (>= 1), "
                f"workers={self.num_workers} (>= 0), boundary_weight={self.boundary_weight} (>= 0), "
                f"prob_weight={self.prob_weight} (> 0)")


def split_pairs(pairs: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Split pairs into training and validation sets, reproducibly.

    Parameters
    ----------
    pairs : list
    fraction : float
        Share for validation, rounded down: with fewer than ``1 / fraction`` pairs there is no
        validation set, so that every one of a few annotated images trains (fine-tuning on 2-9
        images at the default 0.1), and at least one pair always trains.
    seed : int

    Returns
    -------
    train, val : list

    Examples
    --------
    >>> [len(part) for part in split_pairs(list(range(5)), 0.1, seed=0)]
    [5, 0]
    >>> [len(part) for part in split_pairs(list(range(12)), 0.1, seed=0)]
    [11, 1]
    """
    n_val = min(len(pairs) - 1, int(fraction * len(pairs) + 1e-9)) if fraction > 0 else 0
    if n_val <= 0:
        return list(pairs), []
    order = np.random.default_rng(seed).permutation(len(pairs))
    val = set(order[:n_val].tolist())
    return ([p for i, p in enumerate(pairs) if i not in val],
            [p for i, p in enumerate(pairs) if i in val])


def train(
    data_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
    config: TrainConfig = TrainConfig(), data: DataConfig = DataConfig(),
    net_config: NetConfig = NetConfig(), resume: bool = False,
    pretrained: str | os.PathLike[str] | None = None, cache_dir: Path | None = None,
) -> Path:
    """Train a network; write ``last.pt``, ``best.pt`` and ``log.csv`` under ``out_dir``.

    Parameters
    ----------
    data_path : str or PathLike
        ``images/`` + ``labels/`` (``<name>_label.tiff``), or one folder holding both.
    out_dir : str or PathLike
    config : TrainConfig
    data : DataConfig
    net_config : NetConfig
        Ignored when resuming or starting from ``pretrained`` (their shape wins).
    resume : bool
        Continue from ``out_dir/last.pt`` if it exists.
    pretrained : str or PathLike, optional
        Start from these weights.
    cache_dir : Path, optional
        Where targets are cached.

    Returns
    -------
    best : Path
        ``best.pt`` (the best validation F1), or ``last.pt`` without a validation set. Started
        from ``pretrained``, the starting weights are scored first and ``best.pt`` holds them,
        size head and all, unless a validation beats them.

    Raises
    ------
    FileNotFoundError, ValueError
        For a bad data folder, checkpoint or device (one line naming the file).
    """
    out = Path(out_dir)
    device = pick_device(config.device)
    pairs = discover_pairs(data_path)
    train_pairs, val_pairs = split_pairs(pairs, config.val_fraction, config.seed)
    train_span, val_span = None, None
    if config.val_fraction > 0 and not val_pairs:
        train_pairs, val_pairs, train_span, val_span = _guard_split(pairs)
    dataset = FlowDataset(train_pairs, data, cache_dir, span=train_span)
    fresh = not (resume and (out / "last.pt").is_file())
    session = _Session.start(out, config, net_config, device, resume, pretrained, len(dataset))
    if fresh and pretrained and val_pairs:
        session.score_start(validate(session.net, val_pairs, device, diameter=data.diameter,
                                     span=val_span))
    # A size head read the old weights' features (flowseg.inference.sizehead): new weights make it stale.
    session.net.metadata.pop("size_head", None)
    session.net.metadata.update(training={
        "data_path": str(data_path), "train_images": len(train_pairs),
        "val_images": len(val_pairs), "train_config": asdict(config), "data_config": asdict(data)},
        normalization={"lower": 1.0, "upper": 99.0, "channels": 3},
        diameter=data.diameter or _median_diameter(dataset),
        thresholds=asdict(MaskConfig()))
    for epoch in range(session.epoch, config.epochs):
        order = epoch_order(len(dataset), batch_size=config.batch_size, epoch=epoch,
                            seed=config.seed)
        losses = session.run_epoch(dataset, order, epoch)
        val_f1 = math.nan
        if val_pairs and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
            val_f1 = validate(session.net, val_pairs, device, diameter=data.diameter,
                              span=val_span)
        session.end_epoch(epoch, losses, val_f1)
    result = session.best_path if val_pairs else out / "last.pt"
    held_out = "images" if val_span is None else "ends of the images"
    if val_pairs and read_checkpoint(result).get("epoch") == 0:
        log.warning("no validation beat the starting weights (F1 %.4f on the held-out %s): %s "
                    "holds them unchanged", session.best_f1, held_out, result)
        return result
    if config.size_head:
        _refit_size_head(result, train_pairs)
    if pretrained and val_pairs and config.size_head:
        # Validation scores at the training diameter, given the true one; a user predicts with
        # the automatic diameter, which the refitted size head now gives: score that way too.
        start, tuned = (automatic_f1(load_net(path), val_pairs, device, val_span)
                        for path in (pretrained, result))
        log.info("with the automatic diameter: F1 %.4f from the starting weights, %.4f "
                 "trained", start, tuned)
        if tuned < start:
            save_net(load_net(pretrained), result, epoch=0, automatic_f1=start)
            log.warning("with the automatic diameter the starting weights score better on the "
                        "held-out %s (F1 %.4f against %.4f): %s holds them unchanged", held_out,
                        start, tuned, result)
    return result


def _guard_split(pairs: list[tuple[Path, Path]]) -> tuple[list[tuple[Path, Path]], ...]:
    """Too few pairs for a validation set: train on the first part of each, validate on the end.

    Returns the training pairs, the validation pairs and their spans (``GUARD_SHARE``); no
    validation at all if no image holds a cell in its last part.
    """
    head, tail = (0.0, 1.0 - GUARD_SHARE), (1.0 - GUARD_SHARE, 1.0)
    count = f"{len(pairs)} image pair{'s' if len(pairs) > 1 else ''}"
    for _, label_path in pairs:
        labels = read_labels(label_path)
        if held_out_cells(labels, span_mask(labels.shape, tail)).any():
            log.info("%s, fewer than 1 / val_fraction: each trains on the first %.0f%% of its "
                     "longer side and validates on the rest", count, 100 * head[1])
            return list(pairs), list(pairs), head, tail  # type: ignore[return-value]
    log.info("%s, fewer than 1 / val_fraction, and no cell in the last %.0f%% of any: all "
             "train, none validates (last.pt is the result)", count, 100 * GUARD_SHARE)
    return list(pairs), [], None, None  # type: ignore[return-value]


def _refit_size_head(path: Path, pairs: list[tuple[Path, Path]]) -> None:
    """Store a size head fitted on the run's training images in the checkpoint at ``path``."""
    start = time.monotonic()
    head = refit_size_head(load_net(path), pairs)
    if head is None:
        return
    state = read_checkpoint(path)
    state["size_head"] = head
    save_atomic(state, path)
    log.info("size head refitted on %d samples of %d training images in %.0f s", head["samples"],
             head["images"], time.monotonic() - start)


def optimizer_and_schedule(
    net: torch.nn.Module, config: TrainConfig, total_steps: int,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """Return AdamW and its learning-rate schedule: a linear warm-up, then a cosine decay to 0.

    Parameters
    ----------
    net : torch.nn.Module
    config : TrainConfig
        ``learning_rate``, ``weight_decay`` and ``warmup_fraction`` are used.
    total_steps : int

    Returns
    -------
    optimizer : torch.optim.AdamW
    scheduler : torch.optim.lr_scheduler.LambdaLR
        To be stepped once per optimisation step.
    """
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    total = max(1, total_steps)
    warmup = max(1, min(max(int(config.warmup_fraction * total), MIN_WARMUP_STEPS), total // 4))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    return optimizer, scheduler


class _Session:
    """The mutable state of one training run, and how it is saved and restored."""

    def __init__(self, out: Path, config: TrainConfig, net: FlowUNet, device: torch.device,
                 steps_per_epoch: int):
        self.out, self.config, self.device = out, config, device
        # The CPU trains in the faster of the two memory layouts (measured once, cached).
        self.execution = plan_execution(device.type, "float32" if device.type == "cpu" else "auto",
                                        runtime="torch")
        self.net = self.execution.place(net)
        self.optimizer, self.scheduler = optimizer_and_schedule(
            net, config, max(1, config.epochs * steps_per_epoch))
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.epoch, self.step_in_epoch, self.best_f1 = 0, 0, -1.0
        self.best_path = out / "best.pt"
        self.saved_at = time.monotonic()
        self.started = time.monotonic()

    @classmethod
    def start(cls, out: Path, config: TrainConfig, net_config: NetConfig, device: torch.device,
              resume: bool, pretrained: str | os.PathLike[str] | None, count: int) -> _Session:
        steps = -(-config.batch_size // count) * count // config.batch_size
        last = out / "last.pt"
        if not resume and last.is_file():
            raise InputError(f"{out}: holds a training run already (last.pt): continue it with "
                             "--resume, or choose another --out")
        if resume and last.is_file():
            state = read_checkpoint(last)
            session = cls(out, config, load_net(last), device, steps)
            session.restore(state)
            log.info("resuming %s at epoch %d, step %d", last, session.epoch, session.step_in_epoch)
            return session
        torch.manual_seed(config.seed)
        net = load_net(pretrained) if pretrained else FlowUNet(net_config)
        out.mkdir(parents=True, exist_ok=True)
        (out / "log.csv").write_text(",".join(LOG_FIELDS) + "\n")
        return cls(out, config, net, device, steps)

    def restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        before = state.get("training", {}).get("train_config", {}).get("epochs")
        if before is not None and before != self.config.epochs:
            # The schedule is a function of the total steps; the stored state is only the step.
            step = self.scheduler.last_epoch
            log.warning("resuming a run of %d epochs as one of %d: the learning rate follows the "
                        "cosine over %d epochs from step %d (%.2g now)", before, self.config.epochs,
                        self.config.epochs, step,
                        self.config.learning_rate * self.scheduler.lr_lambdas[0](step))
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.best_f1 = float(state["best_f1"])
        torch.set_rng_state(state["rng"]["torch"])
        name, keys, pos, has_gauss, gauss = state["rng"]["numpy"]
        np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
        random.setstate(state["rng"]["python"])

    def run_epoch(self, dataset: FlowDataset, order: list[tuple[int, int]],
                  epoch: int) -> list[tuple[float, float]]:
        batch = self.config.batch_size
        start = self.step_in_epoch if epoch == self.epoch else 0
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, sampler=order[start * batch:],
            num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda")
        self.net.train()
        losses: list[tuple[float, float]] = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", leave=False,
                   disable=None)
        for step, (x, y) in enumerate(bar, start=start + 1):
            losses.append(self.train_step(self.execution.prepare(x), y.to(self.device)))
            bar.set_postfix(loss=f"{sum(map(sum, losses)) / len(losses):.4f}")
            if time.monotonic() - self.saved_at > self.config.checkpoint_seconds:
                self.save_last(epoch, step)
        return losses

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            output = self.net(x)
        flow, prob = flow_loss(output, y, self.config.boundary_weight)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(flow + self.config.prob_weight * prob).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(flow.detach()), float(prob.detach())

    def score_start(self, f1: float) -> None:
        """Record the starting weights' validation F1: best.pt holds them until one beats it."""
        self.best_f1 = f1
        save_net(self.net, self.best_path, val_f1=f1, epoch=0)
        self._log_row({"epoch": 0, "step": 0, "val_f1": f1, "seconds": 0.0})
        log.info("starting weights: val F1 %.4f", f1)

    def end_epoch(self, epoch: int, losses: list[tuple[float, float]], val_f1: float) -> None:
        flow = float(np.mean([f for f, _ in losses])) if losses else math.nan
        prob = float(np.mean([p for _, p in losses])) if losses else math.nan
        if not math.isnan(val_f1) and val_f1 > self.best_f1:
            self.best_f1 = val_f1
            save_net(self.net, self.best_path, val_f1=val_f1, epoch=epoch + 1)
        self.save_last(epoch + 1, 0)
        row = {"epoch": epoch + 1, "step": self.scheduler.last_epoch, "loss": flow + prob,
               "flow_loss": flow, "prob_loss": prob, "val_f1": val_f1,
               "lr": self.optimizer.param_groups[0]["lr"],
               "seconds": round(time.monotonic() - self.started, 1)}
        self._log_row(row)
        validated = "" if math.isnan(val_f1) else f", val F1 {val_f1:.4f}"
        log.info("epoch %d/%d: loss %.4f (flow %.4f, prob %.4f)%s, %.0f s", epoch + 1,
                 self.config.epochs, flow + prob, flow, prob, validated, row["seconds"])

    def _log_row(self, row: dict[str, Any]) -> None:
        with open(self.out / "log.csv", "a", newline="") as stream:
            csv.DictWriter(stream, fieldnames=LOG_FIELDS).writerow(row)

    def save_last(self, epoch: int, step_in_epoch: int) -> None:
        save_net(self.net, self.out / "last.pt", optimizer=self.optimizer.state_dict(),
                 scheduler=self.scheduler.state_dict(), epoch=epoch,
                 step_in_epoch=step_in_epoch, best_f1=self.best_f1,
                 rng={"torch": torch.get_rng_state(), "numpy": _numpy_state(),
                      "python": random.getstate()})
        self.saved_at = time.monotonic()


def _median_diameter(dataset: FlowDataset) -> float:
    """Median cell diameter the network was trained at (before zoom augmentation), in pixels."""
    sizes = [float(e["diameter"]) for e in dataset.entries if float(e["diameter"]) > 0]  # type: ignore[arg-type]
    return float(np.median(sizes)) if sizes else 0.0


def _numpy_state() -> tuple[Any, ...]:
    # The legacy global state, kept for any library that draws from it; as plain lists, since
    # checkpoints load with weights_only=True.
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    return (name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss))


