"""predict_folder: every format, bad files reported, outputs and reruns; the CLI and predict.sh."""

from __future__ import annotations

import hashlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from flowseg.apps.cli import main
from flowseg.apps.predict import Outputs, predict_folder
from flowseg.inference.pipeline import load_model
from flowseg.inference.tiling import TileConfig
from flowseg.io import read_description, read_labels

RNG = np.random.default_rng(0)


def write_formats(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "gray8.png": RNG.integers(0, 255, (40, 50)).astype(np.uint8),
        "gray16p.png": RNG.integers(0, 65535, (40, 50)).astype(np.uint16),
        "rgb8p.png": RNG.integers(0, 255, (40, 50, 3)).astype(np.uint8),
        "rgb16p.png": RNG.integers(0, 65535, (40, 50, 3)).astype(np.uint16),
        "rgbj.jpg": RNG.integers(0, 255, (40, 50, 3)).astype(np.uint8),
        "grayb.bmp": RNG.integers(0, 255, (40, 50)).astype(np.uint8),
        "rgbb.bmp": RNG.integers(0, 255, (40, 50, 3)).astype(np.uint8),
        "gray16t.tif": RNG.integers(0, 65535, (40, 50)).astype(np.uint16),
        "four.tiff": RNG.integers(0, 65535, (4, 40, 50)).astype(np.uint16),
        "rgb8t.tif": RNG.integers(0, 255, (40, 50, 3)).astype(np.uint8),
    }
    for name, array in files.items():
        suffix = Path(name).suffix
        if suffix in (".tif", ".tiff"):
            tifffile.imwrite(folder / name, array, photometric="minisblack")
        elif suffix == ".png":
            (folder / name).write_bytes(imagecodecs.png_encode(array))
        elif suffix == ".bmp":
            (folder / name).write_bytes(imagecodecs.bmp_encode(array))
        else:
            (folder / name).write_bytes(imagecodecs.jpeg8_encode(array))
    return [Path(n).stem for n in files]


def test_every_format_gets_a_label_file(tmp_path: Path, tiny_model: Path) -> None:
    stems = write_formats(tmp_path / "in")
    report = predict_folder(tmp_path / "in", tmp_path / "out", model=load_model(tiny_model),
                            device="cpu")
    assert not report.failed and len(report.written) == len(stems)
    for stem in stems:
        labels = read_labels(tmp_path / "out" / f"{stem}_label.tiff")
        assert labels.shape == (40, 50)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_bad_files_are_reported_and_good_ones_written(tmp_path: Path, tiny_model: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in"
    write_formats(inp)
    (inp / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (inp / "empty.tif").write_bytes(b"")
    tifffile.imwrite(inp / "one.tif", np.array([[7]], np.uint8))
    (inp / "notes.txt").write_text("not an image")
    before = digest(inp)
    code = main(["predict", "-i", str(inp), "-o", str(tmp_path / "out"), "--model",
                 str(tiny_model), "--device", "cpu", "--tile", "128"])
    captured = capsys.readouterr()
    assert code == 1
    assert "failed: corrupt.png: " in captured.err and "failed: empty.tif: " in captured.err
    assert "11 written" in captured.out and "ignored: notes.txt (not an image)" in captured.out
    assert captured.err.count("corrupt.png") == 1  # each failure said once, with its reason
    assert "2 failed: corrupt.png, empty.tif" in captured.out
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "one_label.tiff" in out and len(out) == 11 and all(n.endswith("_label.tiff") for n in out)
    assert digest(inp) == before  # inputs untouched
    # A second run skips what exists, and --overwrite redoes it.
    again = predict_folder(inp, tmp_path / "out", model=load_model(tiny_model), device="cpu",
                           tiles=TileConfig(tile=128))  # the settings of the first run
    assert len(again.skipped) == 11 and not again.written
    redo = predict_folder(inp, tmp_path / "out", model=load_model(tiny_model), device="cpu",
                          overwrite=True)
    assert len(redo.written) == 11


def test_flows_and_overlays(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", RNG.integers(0, 255, (30, 40)).astype(np.uint8))
    net = load_model(tiny_model)
    first = predict_folder(tmp_path / "in", tmp_path / "out", model=net, device="cpu")
    assert len(first.written) == 1
    # Asking for more outputs redoes the image: a requested output is missing.
    everything = Outputs(flows=True, overlays=True, csv=True, rois=True)
    again = predict_folder(tmp_path / "in", tmp_path / "out", model=net, device="cpu",
                           outputs=everything)
    assert len(again.written) == 1
    assert tifffile.imread(tmp_path / "out" / "a_flows.tiff").shape == (3, 30, 40)
    assert imagecodecs.imread(str(tmp_path / "out" / "a_overlay.png")).shape == (30, 40, 3)
    assert (tmp_path / "out" / "a_cells.csv").read_text().startswith("label,area,")
    assert (tmp_path / "out" / "a_rois.zip").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_cells.csv", "a_flows.tiff", "a_label.tiff", "a_overlay.png", "a_rois.zip"]
    assert len(predict_folder(tmp_path / "in", tmp_path / "out", model=net, device="cpu",
                              outputs=everything).skipped) == 1
    # Other settings (a diameter) redo it, and the label file says what made it.
    other = predict_folder(tmp_path / "in", tmp_path / "out", model=net, device="cpu",
                           outputs=everything, diameter=20)
    assert len(other.written) == 1 and not other.skipped
    assert '"diameter": 20' in read_description(tmp_path / "out" / "a_label.tiff")


def test_model_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_formats(tmp_path / "in")
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"),
                 "--model", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert "missing.pt: no such checkpoint file" in err and "\n" not in err
    wrong = tmp_path / "wrong.pt"
    wrong.write_text("hello")
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"),
                 "--model", str(wrong)]) == 1
    assert "wrong.pt: not a flowseg checkpoint" in capsys.readouterr().err
    assert main(["predict", "-i", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", "-i", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 1
    assert "no images" in capsys.readouterr().err


def test_predict_sh_runs_outside_docker(tmp_path: Path, tiny_model: Path) -> None:
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "predict.sh"
    inp, out = tmp_path / "inputs", tmp_path / "outputs"
    inp.mkdir()
    tifffile.imwrite(inp / "cell_01.tif", RNG.integers(0, 255, (48, 64)).astype(np.uint8))
    (inp / "cell_02.png").write_bytes(imagecodecs.png_encode(
        RNG.integers(0, 255, (40, 40, 3)).astype(np.uint8)))
    env = {**os.environ, "FLOWSEG_INPUTS": str(inp), "FLOWSEG_OUTPUTS": str(out)}
    run = subprocess.run(["sh", str(script), "--model", str(tiny_model), "--device", "cpu"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cell_01_label.tiff", "cell_02_label.tiff"]
    (tmp_path / "empty").mkdir()
    env["FLOWSEG_INPUTS"] = str(tmp_path / "empty")
    run = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "nothing to segment" in run.stdout


def test_a_redo_leaves_no_output_of_the_run_before(tmp_path: Path) -> None:
    # A redo with other settings rewrote the labels and left the old CSV and overlay beside them.
    from flowseg.apps.predict import Outputs, predict_folder
    from flowseg.training.synthetic import make_sample

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", make_sample((96, 96), "nuclei", seed=1)[0])
    predict_folder(tmp_path / "in", tmp_path / "out", device="cpu",
                   outputs=Outputs(csv=True, overlays=True))
    assert (tmp_path / "out" / "a_cells.csv").exists()
    predict_folder(tmp_path / "in", tmp_path / "out", device="cpu", diameter=20.0,
                   outputs=Outputs(rois=True))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_label.tiff", "a_rois.zip"]


def test_the_next_run_removes_what_an_interrupted_one_left(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # SIGKILL mid-write left .NAME.tmp files that no later run removed or reported.
    from flowseg.training.synthetic import make_sample

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", make_sample((64, 64), "nuclei", seed=1)[0])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".a_label.tiff.k3j9x.tmp").write_bytes(b"half")
    (tmp_path / "out" / ".big.zarr.x1.parts").mkdir()
    (tmp_path / "out" / ".keep_me.txt").write_bytes(b"not ours")
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".keep_me.txt",
                                                                     "a_label.tiff"]
    assert "removed 2 temporary files left by an interrupted run" in capfd.readouterr().err
