from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from flowseg.apps.cli import build_parser, main
from flowseg.inference.pipeline import default_model_path
from flowseg.io import write_labels
from flowseg.model.net import load_net, read_checkpoint
from flowseg.training.synthetic import random_touching_labels
from flowseg.training.train import FINETUNE_LEARNING_RATE


def test_help_imports_neither_torch_nor_numba() -> None:
    code = ("import sys; from flowseg.apps.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'numba', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("validate every N epochs (default: 5)", "(default: 0)",
                    "training diameter, 30 px", "(default: 2e-4 from a pretrained model"):
        assert default in text, default


def test_module_help_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "flowseg", "--help"], capture_output=True,
                         text=True, check=True)
    assert "evaluate" in out.stdout
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


def test_evaluate_prints_table_and_writes_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = random_touching_labels((96, 96), seed=0)
    write_labels(labels, tmp_path / "gt" / "img_label.tiff")
    write_labels(labels, tmp_path / "pred" / "img_label.tiff")
    write_labels(labels, tmp_path / "gt" / "other_label.tiff")
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--csv", str(tmp_path / "s.csv")])
    out = capsys.readouterr().out
    assert code == 0
    assert "img" in out and "mean F1 0.5000" in out and "missing predictions" in out
    assert (tmp_path / "s.csv").read_text().count("\n") == 3


def test_evaluate_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope: no such folder" in err
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "bad_label.tiff").write_bytes(b"x")
    write_labels(np.zeros((4, 4), np.uint8), tmp_path / "gt" / "ok_label.tiff")
    (tmp_path / "pred").mkdir()
    # A --pred folder without a single label file is a wrong folder, not 0 for every image.
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'pred'}: no *_label.tiff files to score" in err
    write_labels(np.zeros((4, 4), np.uint8), tmp_path / "pred" / "ok_label.tiff")
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 1
    assert "failed: bad" in capsys.readouterr().out
    # --csv naming a folder: the option and the path, before anything is scored.
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--csv", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"--csv {tmp_path}: is a folder" in captured.err and captured.err.count("\n") == 1
    assert captured.out == ""


def test_parser_requires_a_command() -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([])
    assert info.value.code == 2


def test_train_command_runs_and_reports_bad_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowseg.training.synthetic import make_sample

    monkeypatch.setenv("FLOWSEG_CACHE", str(tmp_path / "cache"))
    for i in range(3):
        image, labels = make_sample((64, 64), "tissue", seed=i)
        write_labels(labels, tmp_path / "data" / "labels" / f"t{i}_label.tiff")
        (tmp_path / "data" / "images").mkdir(exist_ok=True)
        (tmp_path / "data" / "images" / f"t{i}.png").write_bytes(imagecodecs.png_encode(image))
    out = tmp_path / "run"
    args = ["train", "--data_path", str(tmp_path / "data"), "--out", str(out), "--epochs", "2",
            "--batch_size", "2", "--crop", "64", "--workers", "0", "--val_every", "1",
            "--val_fraction", "0.34"]
    assert main(args) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert "trained:" in capsys.readouterr().out
    # From the bundled model, the fine-tuning rate; the result keeps an automatic diameter: a
    # size head refitted on the 2 training images, or the bundled model's own where no epoch
    # beat the bundled model's score on the held-out image (best.pt then holds it unchanged).
    run = load_net(out / "last.pt").metadata
    assert run["training"]["train_config"]["learning_rate"] == FINETUNE_LEARNING_RATE
    result = load_net(out / "best.pt").metadata
    if read_checkpoint(out / "best.pt")["epoch"] == 0:
        bundled = load_net(default_model_path()).metadata
        assert (result["size_head"], result["training"]) == (bundled["size_head"],
                                                             bundled["training"])
    else:
        assert result["size_head"]["images"] == 2
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    # header, the starting weights' score (epoch 0) and 3 epochs
    assert (out / "log.csv").read_text().count("\n") == 5
    capsys.readouterr()
    before = (out / "last.pt").read_bytes()
    assert main(args) == 1  # not silently over a finished run
    err = capsys.readouterr().err
    assert f"{out}: holds a training run already" in err and "--resume" in err
    assert err.count("\n") == 1 and (out / "last.pt").read_bytes() == before
    assert main(["train", "--data_path", str(tmp_path / "nothing")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_verbosity_anywhere_one_file_and_a_glob(tmp_path: Path, tiny_model: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from flowseg.apps.cli import build_parser

    assert build_parser().parse_args(["predict", "-i", "a", "-o", "b", "-v"]).verbosity == 1
    assert build_parser().parse_args(["-q", "predict", "-i", "a", "-o", "b"]).verbosity == -1
    assert build_parser().parse_args(["predict", "-i", "a", "-o", "b"]).verbosity == 0
    (tmp_path / "in").mkdir()
    for name in ("x.tif", "y.tif"):
        tifffile.imwrite(tmp_path / "in" / name, np.zeros((40, 40), np.uint8))
    common = ["--model", str(tiny_model), "--device", "cpu"]
    assert main(["predict", "-i", str(tmp_path / "in" / "x.tif"), "-o", str(tmp_path / "o1"),
                 *common]) == 0
    assert [p.name for p in (tmp_path / "o1").iterdir()] == ["x_label.tiff"]
    assert main(["predict", "-i", str(tmp_path / "in" / "*.tif"), "-o", str(tmp_path / "o2"),
                 *common]) == 0
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["x_label.tiff", "y_label.tiff"]
    capsys.readouterr()
    # -q: warnings and errors only, so no summary line; a failure still says itself and counts.
    (tmp_path / "in" / "z.tif").write_bytes(b"not a tiff")
    assert main(["-q", "predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o3"),
                 *common]) == 1
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err.count("z.tif") == 1
    (tmp_path / "in" / "z.tif").unlink()
    (tmp_path / "file").write_text("")
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "file"), *common]) == 1
    assert "output path is a file" in capsys.readouterr().err


def test_bugs_are_told_apart_from_bad_input(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import flowseg.apps.cli as cli
    from flowseg import InputError

    def bad_input(args: object) -> int:
        raise InputError("cells.tif: empty file")

    def bug(args: object) -> int:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(cli, "_evaluate", bad_input)  # build_parser binds the handler anew
    assert cli.main(["evaluate", "--pred", "p", "--gt", "g"]) == 1
    assert capsys.readouterr().err.strip() == "flowseg evaluate: error: cells.tif: empty file"
    monkeypatch.setattr(cli, "_evaluate", bug)
    assert cli.main(["evaluate", "--pred", "p", "--gt", "g"]) == 1
    err = capsys.readouterr().err
    assert "internal error: operands could not" in err and "-v" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="operands"):
        cli.main(["evaluate", "--pred", "p", "--gt", "g", "-v"])
    # main() pointed logging at capsys's stream, which closes after this test: point it away.
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def test_predict_help_states_the_automatic_range(capsys: pytest.CaptureFixture[str]) -> None:
    from flowseg.inference.estimate import AUTO_RANGE

    with pytest.raises(SystemExit):
        main(["predict", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    low, high = (f * 30 for f in AUTO_RANGE)
    assert f"outside {low:g}-{high:g} px ({AUTO_RANGE[0]:g}-{AUTO_RANGE[1]:g}x" in text


def test_the_first_run_says_it_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    # The first predict after install spent ~16 s compiling numba kernels without a word.
    import flowseg.apps.cli as cli

    monkeypatch.setattr(cli, "_numba_cache_present", lambda: False)
    (tmp_path / "in").mkdir()
    cli.main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert "first run: compiling flowseg's numba kernels once" in capfd.readouterr().err


def test_mask_thresholds_from_the_command_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # cellpose's --cellprob_threshold / --flow_threshold: a lower logit threshold draws wider
    # masks, a higher one tighter; what was used is saved in the label file's settings.
    import json

    from flowseg.io import read_description, read_labels
    from flowseg.training.synthetic import make_sample

    image, _ = make_sample((192, 192), "fluorescence", seed=2, diameter=30)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", image)
    area = {}
    for logit in (None, -2.0, 2.0):
        out = tmp_path / f"out{logit}"
        extra = [] if logit is None else ["--cellprob-threshold", str(logit)]
        assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(out), "--device", "cpu",
                     "--diameter", "30", "--min-size", "20", *extra]) == 0
        labels = read_labels(out / "a_label.tiff")
        area[logit] = int((labels > 0).sum())
        used = json.loads(read_description(out / "a_label.tiff"))["masks"]
        assert used["min_size"] == 20 and used["flow_threshold"] == 0.4
        assert used["cellprob_threshold"] == (0.0 if logit is None else logit)
    print(f"foreground pixels at logit thresholds -2 / 0 / 2: {area[-2.0]} / {area[None]} / "
          f"{area[2.0]}")
    assert area[-2.0] > area[None] > area[2.0] > 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["predict", "-i", "a", "-o", "b", "--flow-threshold", "-0.5"])
    assert "--flow-threshold: must be 0 or more, got -0.5" in capsys.readouterr().err


def test_predict_help_states_the_bundled_models_mask_settings(
        capsys: pytest.CaptureFixture[str]) -> None:
    from flowseg.inference.pipeline import default_model_path
    from flowseg.model.net import read_checkpoint

    saved = read_checkpoint(default_model_path())["thresholds"]
    with pytest.raises(SystemExit):
        main(["predict", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    assert (f"(the bundled model: {saved['cellprob_threshold']:g}, {saved['flow_threshold']:g} "
            f"and {saved['min_size']:g})") in text
