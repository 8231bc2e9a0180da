from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from flowseg.io import write_labels
from flowseg.model.net import FlowUNet, NetConfig, load_net
from flowseg.representation.flows import labels_to_targets
from flowseg.training.dataset import DataConfig, discover_pairs
from flowseg.training.loss import flow_loss, touching_band
from flowseg.training.synthetic import make_sample
from flowseg.training.train import TrainConfig, split_pairs, train
from flowseg.training.validate import validate

TINY = NetConfig(widths=(8, 16, 32), full_res=4)


def write_fluorescence(root: Path, count: int, size: int, seed: int = 0) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, labels = make_sample((size, size), "fluorescence", seed=seed + i)
        tifffile.imwrite(root / "images" / f"f{i:02d}.tif", image)
        write_labels(labels, root / "labels" / f"f{i:02d}_label.tiff")
    return root


def test_loss_is_zero_for_a_perfect_prediction() -> None:
    target = torch.zeros(1, 3, 4, 4)
    target[0, 0] = 1.0
    target[0, 2] = 1.0
    output = torch.stack([5 * target[0, 0], target[0, 1], torch.full((4, 4), 50.0)])[None]
    flow, prob = flow_loss(output, target)
    assert float(flow) == 0.0 and float(prob) < 1e-6


def test_touching_band_lies_where_two_cells_meet() -> None:
    labels = np.zeros((40, 60), np.uint32)
    labels[10:30, 8:30] = 1
    labels[10:30, 30:52] = 2  # touches cell 1 along x = 29 | 30
    labels[34:39, 5:15] = 3  # alone
    target = torch.from_numpy(labels_to_targets(labels))[None]
    band = touching_band(target[:, :2])[0].numpy()
    assert band[12:28, 29:31].all()  # the shared edge, away from the corners
    assert not band[:, :25].any() and not band[:, 35:].any()  # no outer edge, no centre
    assert not band[32:].any()
    # The weight counts only the error inside the band.
    output = 5 * target.clone()
    output[0, 1, 20, 29] += 1.0
    plain, _ = flow_loss(output, target)
    weighted, _ = flow_loss(output, target, boundary_weight=9.0)
    assert float(weighted) == pytest.approx(10 * float(plain))
    output = 5 * target.clone()
    output[0, 1, 20, 12] += 1.0
    assert float(flow_loss(output, target, 9.0)[0]) == pytest.approx(float(flow_loss(output, target)[0]))


def test_split_is_reproducible() -> None:
    train_set, val = split_pairs(list(range(20)), 0.1, seed=3)
    assert len(val) == 2 and sorted(train_set + val) == list(range(20))
    assert split_pairs(list(range(20)), 0.1, seed=3) == (train_set, val)
    assert split_pairs([1], 0.5, seed=0) == ([1], [])
    # A few annotated images all train at the default share; a validation set from 1 / fraction.
    assert split_pairs(list(range(9)), 0.1, seed=0) == (list(range(9)), [])
    assert [len(part) for part in split_pairs(list(range(10)), 0.1, seed=0)] == [9, 1]
    assert [len(part) for part in split_pairs(list(range(2)), 0.9, seed=0)] == [1, 1]


@pytest.mark.slow
def test_short_training_beats_the_untrained_network(tmp_path: Path) -> None:
    root = write_fluorescence(tmp_path / "data", count=12, size=128)
    # 9 training images, 2 steps an epoch: 400 steps of a tiny network, about 15 s on 2 cores.
    config = TrainConfig(epochs=200, batch_size=4, learning_rate=5e-3, val_fraction=0.25,
                         val_every=100, num_workers=0, seed=1)
    _train_pairs, val_pairs = split_pairs(discover_pairs(root), 0.25, seed=1)
    torch.manual_seed(1)
    before = validate(FlowUNet(TINY), val_pairs, torch.device("cpu"))
    best = train(root, tmp_path / "run", config=config, data=DataConfig(crop=96), net_config=TINY,
                 cache_dir=tmp_path / "cache")
    after = validate(load_net(best), val_pairs, torch.device("cpu"))
    print(f"validation F1: untrained {before:.3f}, after 400 steps {after:.3f}")
    assert after >= before + 0.5  # measured: 0.000 -> 0.830
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss") and len(log) == 201
    losses = [float(line.split(",")[2]) for line in log[1:]]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])


TRAIN_SCRIPT = """
import sys
from pathlib import Path
from flowseg.training.dataset import DataConfig
from flowseg.model.net import NetConfig
from flowseg.training.train import TrainConfig, train
out, resume = Path(sys.argv[2]), sys.argv[3] == "resume"
train(sys.argv[1], out, config=TrainConfig(epochs=3, batch_size=2, val_fraction=0, num_workers=1,
      checkpoint_seconds=float(sys.argv[4]), seed=5), data=DataConfig(crop=64),
      net_config=NetConfig(widths=(8, 16), full_res=4), resume=resume,
      cache_dir=Path(sys.argv[5]))
"""


def run_training(root: Path, out: Path, cache: Path, resume: bool, every: float) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-c", TRAIN_SCRIPT, str(root), str(out),
            "resume" if resume else "fresh", str(every), str(cache)]
    with open(out / f"stderr-{time.monotonic_ns()}.txt", "wb") as err:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)


def finish(proc: subprocess.Popen, out: Path) -> None:
    code = proc.wait(timeout=300)
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in out.glob("stderr-*.txt"))
    assert code == 0, logs


def mid_epoch(checkpoint: Path) -> bool:
    try:
        return torch.load(checkpoint, weights_only=True)["step_in_epoch"] > 0
    except (FileNotFoundError, RuntimeError, EOFError):
        return False  # not written yet


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path: Path) -> None:
    root = write_fluorescence(tmp_path / "data", count=8, size=96)
    cache = tmp_path / "cache"
    finish(run_training(root, tmp_path / "whole", cache, resume=False, every=1e9), tmp_path / "whole")
    # Checkpoint after every step; freeze the run, and SIGKILL it only if the checkpoint on disk
    # at that moment is mid-epoch (polling alone races the next step), then resume.
    cut = run_training(root, tmp_path / "cut", cache, resume=False, every=0.0)
    last = tmp_path / "cut" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and cut.poll() is None:
        if mid_epoch(last):
            os.kill(cut.pid, signal.SIGSTOP)
            if mid_epoch(last):
                break
            os.kill(cut.pid, signal.SIGCONT)
        time.sleep(0.02)
    os.kill(cut.pid, signal.SIGKILL)
    cut.wait()
    state = torch.load(last, weights_only=True)
    assert (state["epoch"], state["step_in_epoch"]) < (3, 0), "the run ended before the kill"
    assert state["step_in_epoch"] > 0, "the kill did not land mid-epoch"
    finish(run_training(root, tmp_path / "cut", cache, resume=True, every=1e9), tmp_path / "cut")
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert (a["epoch"], b["epoch"]) == (3, 3)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_bad_device_and_pretrained(tmp_path: Path) -> None:
    root = write_fluorescence(tmp_path / "data", count=2, size=64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            train(root, tmp_path / "o", config=TrainConfig(device="cuda"))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        train(root, tmp_path / "o", config=TrainConfig(epochs=1, num_workers=0),
              pretrained=tmp_path / "nope.pt", cache_dir=tmp_path / "c")


@pytest.mark.parametrize("setting", [{"prob_weight": 0.0}, {"boundary_weight": -1.0},
                                     {"epochs": 0}])
def test_bad_training_settings_are_named(setting: dict[str, float]) -> None:
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"invalid training settings: .*{name}={setting[name]}"):
        TrainConfig(**setting)  # type: ignore[arg-type]


def test_warmup_lasts_at_least_ten_steps_but_never_past_a_quarter() -> None:
    from flowseg.training.train import MIN_WARMUP_STEPS, optimizer_and_schedule

    net = FlowUNet(TINY)
    for total, warmup in ((40, MIN_WARMUP_STEPS), (1000, 50), (8, 2)):
        _, scheduler = optimizer_and_schedule(net, TrainConfig(learning_rate=1.0), total)
        first = scheduler.lr_lambdas[0](0)
        assert first == pytest.approx(1 / warmup * 0.5 * (1 + np.cos(0)), rel=1e-6), total
        assert scheduler.lr_lambdas[0](warmup - 1) == pytest.approx(
            0.5 * (1 + np.cos(np.pi * (warmup - 1) / total)))


def test_resumed_with_more_epochs_trains_on_and_says_so(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    import csv

    root = write_fluorescence(tmp_path / "data", count=3, size=64)
    config = TrainConfig(epochs=2, batch_size=2, num_workers=0, size_head=False)
    data = DataConfig(crop=64)
    first = train(root, tmp_path / "run", config=config, data=data, net_config=TINY,
                  cache_dir=tmp_path / "c")
    before = {k: v.clone() for k, v in load_net(first).state_dict().items()}
    with caplog.at_level("WARNING", logger="flowseg.training.train"):
        train(root, tmp_path / "run", config=TrainConfig(epochs=4, batch_size=2, num_workers=0,
                                                         size_head=False),
              data=data, resume=True, cache_dir=tmp_path / "c")
    assert "resuming a run of 2 epochs as one of 4" in caplog.text
    with open(tmp_path / "run" / "log.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[2]["lr"]) > 0  # the extension trains: it does not stay at the end's 0
    after = load_net(tmp_path / "run" / "last.pt").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_training_refits_the_size_head(tmp_path: Path) -> None:
    root = write_fluorescence(tmp_path / "data", count=2, size=96)
    result = train(root, tmp_path / "run", config=TrainConfig(epochs=1, batch_size=2,
                                                              num_workers=0),
                   data=DataConfig(crop=64), net_config=TINY, cache_dir=tmp_path / "c")
    head = load_net(result).metadata["size_head"]
    assert head["images"] == 2 and head["samples"] >= 4
    assert len(head["weights"]) == len(head["mean"]) > 0


def test_a_fine_tune_that_scores_worse_keeps_the_starting_weights(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Two images, too few for a validation set: each trains on its first 80 % and validates on
    # its last 20 %, where the starting weights are scored first. A learning rate of 0.5 wrecks
    # the bundled model in one step: best.pt must then be the bundled model, size head and all.
    import csv

    from flowseg.inference.pipeline import default_model_path

    root = write_fluorescence(tmp_path / "data", count=2, size=160)
    config = TrainConfig(epochs=2, batch_size=2, learning_rate=0.5, val_every=1, num_workers=0)
    with caplog.at_level("INFO", logger="flowseg.training.train"):
        best = train(root, tmp_path / "run", config=config, data=DataConfig(crop=64, diameter=30),
                     pretrained=default_model_path(), cache_dir=tmp_path / "c")
    assert "validates on the rest" in caplog.text
    assert "no validation beat the starting weights" in caplog.text
    start, kept = load_net(default_model_path()), load_net(best)
    assert best.name == "best.pt"
    assert all(torch.equal(v, kept.state_dict()[k]) for k, v in start.state_dict().items())
    assert kept.metadata["size_head"] == start.metadata["size_head"]
    with open(tmp_path / "run" / "log.csv") as stream:
        rows = list(csv.DictReader(stream))
    scores = [float(r["val_f1"]) for r in rows]
    print(f"held-out F1: start {scores[0]:.3f}, after each epoch {scores[1:]}")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert scores[0] > 0.5 and max(scores[1:]) < scores[0]
    trained = load_net(tmp_path / "run" / "last.pt").state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in start.state_dict().items()
               if v.is_floating_point())


@pytest.mark.parametrize("start_wins", [True, False])
def test_the_automatic_diameter_has_the_last_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture,
                                                   start_wins: bool) -> None:
    # A fine-tune that beats the starting weights at the training diameter (validation) but
    # loses to them with the automatic diameter (what predict does with no option) gives them
    # back; one that wins both ways is kept.
    import flowseg.training.train as training
    from flowseg.model.net import save_net

    root = write_fluorescence(tmp_path / "data", count=2, size=96)
    torch.manual_seed(0)
    start = save_net(FlowUNet(TINY), tmp_path / "start.pt")
    scores = iter([0.5, 0.6])  # the start, then epoch 1: the fine-tune wins validation
    monkeypatch.setattr(training, "validate", lambda *args, **kwargs: next(scores))
    calls = []

    def automatic(net: FlowUNet, pairs: list, device: torch.device, span: tuple) -> float:
        calls.append((len(pairs), span))
        return 0.9 if (len(calls) == 1) == start_wins else 0.8  # start first, then the result

    monkeypatch.setattr(training, "automatic_f1", automatic)
    with caplog.at_level("INFO", logger="flowseg.training.train"):
        best = train(root, tmp_path / "run", config=TrainConfig(epochs=1, batch_size=2,
                                                                num_workers=0),
                     data=DataConfig(crop=64), pretrained=start, cache_dir=tmp_path / "c")
    assert calls == [(2, (0.8, 1.0))] * 2
    kept = load_net(best).state_dict()
    same = all(torch.equal(v, kept[k]) for k, v in load_net(start).state_dict().items())
    assert same == start_wins
    assert ("starting weights score better" in caplog.text) == start_wins
    assert "size_head" in load_net(best).metadata or start_wins


def test_automatic_f1_scores_the_held_out_part(tmp_path: Path) -> None:
    from flowseg.inference.pipeline import default_model_path
    from flowseg.training.validate import automatic_f1

    root = write_fluorescence(tmp_path / "data", count=1, size=192)
    pairs = discover_pairs(root)
    bundled = automatic_f1(load_net(default_model_path()), pairs, torch.device("cpu"),
                           (0.8, 1.0))
    torch.manual_seed(0)
    untrained = automatic_f1(FlowUNet(TINY), pairs, torch.device("cpu"), (0.8, 1.0))
    print(f"F1 of the last fifth, automatic diameter: bundled {bundled:.3f}, "
          f"untrained {untrained:.3f}")
    assert bundled > 0.7 and untrained < 0.3


def test_few_images_without_cells_at_their_ends_all_train(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_fluorescence(tmp_path / "data", count=1, size=96)
    label_path = root / "labels" / "f00_label.tiff"
    labels = tifffile.imread(label_path)
    labels[76:] = 0
    write_labels(labels, label_path)
    with caplog.at_level("INFO", logger="flowseg.training.train"):
        result = train(root, tmp_path / "run", config=TrainConfig(epochs=1, batch_size=2,
                                                                  num_workers=0, size_head=False),
                       data=DataConfig(crop=64), net_config=TINY, cache_dir=tmp_path / "c")
    assert "no cell in the last 20% of any" in caplog.text
    assert "all train, none validates" in caplog.text and result.name == "last.pt"


def test_validation_scores_at_the_training_diameter(tmp_path: Path) -> None:
    # The training crops are rescaled to the training diameter (FlowDataset); validation must
    # score there too: the bundled 30-px model read 12-px nuclei at their own size before.
    from flowseg.inference.pipeline import default_model_path

    image, labels = make_sample((224, 224), "nuclei", seed=4, diameter=12)
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    write_labels(labels, tmp_path / "labels" / "a_label.tiff")
    pairs = [(tmp_path / "images" / "a.tif", tmp_path / "labels" / "a_label.tiff")]
    net = load_net(default_model_path())
    native = validate(net, pairs, torch.device("cpu"))
    rescaled = validate(net, pairs, torch.device("cpu"), diameter=30.0)
    print(f"validation F1 of 12-px nuclei: at their own size {native:.3f}, at 30 px {rescaled:.3f}")
    assert rescaled > native + 0.1


def test_blocks_start_from_the_pretrained_weights_deepened_once(tmp_path: Path,
                                                                tiny_model: Path) -> None:
    # scripts/train_default_model.py --blocks with --pretrained: the same shape starts from the
    # weights as they are; a deeper one from a deepened copy written once into --work; blocks
    # that do not fit the levels are refused naming --blocks.
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from train_default_model import deepen_start

    def args(blocks: object, pretrained: Path | None = tiny_model) -> SimpleNamespace:
        return SimpleNamespace(blocks=blocks, pretrained=pretrained, work=tmp_path)

    assert deepen_start(args(None)) == (tiny_model, NetConfig())
    assert deepen_start(args((1, 1, 2, 2, 2), None)) == (None, NetConfig(blocks=(1, 1, 2, 2, 2)))
    shape = load_net(tiny_model).config  # 2 levels: the shape is --pretrained's
    assert deepen_start(args(1)) == (tiny_model, shape)
    start, config = deepen_start(args((1, 2)))
    assert start == tmp_path / "deepened.pt" and config.level_blocks == (1, 2)
    assert load_net(start).config.level_blocks == (1, 2)
    written = start.stat().st_mtime_ns
    assert deepen_start(args((1, 2)))[0] == start and start.stat().st_mtime_ns == written
    for bad in ((1, 0), (1, 1, 1)):
        with pytest.raises(ValueError, match="--blocks"):
            deepen_start(args(bad))
