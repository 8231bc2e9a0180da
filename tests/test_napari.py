"""The napari plugin in a real napari: the widget segments a layer as flowseg.segment does.

Needs the ``test-napari`` extra and an X server with OpenGL (pytest-xvfb starts Xvfb where it is
installed); skips, saying which is missing, otherwise.
"""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # napari's dependencies warn about their own deprecations
    warnings.simplefilter("ignore")
    napari = pytest.importorskip("napari",
                                 reason="napari not installed (pip install '.[test-napari]')")
    from flowseg.apps.napari_plugin import SegmentWidget, manifest_path, sample_nuclei, sample_tissue
if not os.environ.get("DISPLAY") and not shutil.which("Xvfb"):
    pytest.skip("no X server: install Xvfb and Mesa (README.md, Set-up)", allow_module_level=True)

from flowseg.inference.pipeline import load_model, segment

# napari and its Qt stack warn about their own deprecations on import and at shutdown.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::PendingDeprecationWarning",
                                        "ignore::FutureWarning",
                                        "ignore:System theme detection:UserWarning")


@pytest.fixture
def viewer(qtbot):  # type: ignore[no-untyped-def]
    view = napari.Viewer(show=False)
    yield view
    view.close()


def run_widget(widget: SegmentWidget, qtbot) -> None:  # type: ignore[no-untyped-def]
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=10_000)


def test_widget_segments_an_image_layer_like_segment(viewer, qtbot) -> None:  # type: ignore[no-untyped-def]
    image, _ = sample_nuclei()[0][:2]
    viewer.add_image(image, name="nuclei")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="flowseg")
    widget.extra.value = True
    run_widget(widget, qtbot)
    labels = viewer.layers["nuclei labels"].data
    expected = segment(image, load_model())
    assert expected.max() > 10 and np.array_equal(labels, expected)
    assert viewer.layers["nuclei cell probability"].data.shape == image.shape
    assert "cells" in widget.status.value


def test_widget_fills_the_slice_on_screen_of_a_stack(viewer, qtbot) -> None:  # type: ignore[no-untyped-def]
    plane = sample_nuclei()[0][0]
    stack = np.stack([np.zeros_like(plane), plane, plane[::-1]])
    viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 2)
    widget = SegmentWidget(viewer)
    widget.diameter.value = 30.0
    run_widget(widget, qtbot)
    labels = viewer.layers["stack labels"].data
    assert labels.shape == stack.shape and labels[:2].max() == 0
    assert np.array_equal(labels[2], segment(plane[::-1], load_model(), diameter=30.0))


def test_samples_and_manifest() -> None:
    image, options, kind = sample_tissue()[0]
    assert image.shape == (384, 384, 3) and options["rgb"] and kind == "image"
    assert sample_tissue()[1][2] == "labels" and sample_tissue()[1][0].max() > 10
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(manifest_path())
    assert {w.command for w in manifest.contributions.widgets} == {"flowseg.segment"}


def test_napari_ome_zarr_opens_the_labels_over_the_image(viewer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # What a pathologist does with --save-ome-zarr (README, "Whole slides"): open the slide, then
    # the labels' group, through the napari-ome-zarr reader.
    pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr not installed")
    from flowseg.apps.cli import main
    from flowseg.inference.pipeline import as_channels_first
    from flowseg.io import read_labels
    from flowseg.training.synthetic import make_sample
    from tests.test_omezarr import write_image

    image, _ = make_sample((320, 288), "nuclei", seed=3)
    write_image(tmp_path / "slide.ome.zarr", as_channels_first(image), "cyx")
    assert main(["predict", "-i", str(tmp_path / "slide.ome.zarr"), "-o", str(tmp_path / "out"),
                 "--save-ome-zarr", "--device", "cpu"]) == 0
    opened = viewer.open(str(tmp_path / "slide.ome.zarr"), plugin="napari-ome-zarr")
    cells = viewer.open(str(tmp_path / "out" / "slide.ome_labels.ome.zarr" / "labels"),
                        plugin="napari-ome-zarr")
    assert [type(layer).__name__ for layer in cells] == ["Labels"] and cells[0].multiscale
    assert len(cells[0].data) >= 2  # the pyramid
    np.testing.assert_array_equal(np.asarray(cells[0].data[0]),
                                  read_labels(tmp_path / "out" / "slide.ome_label.tiff"))
    for layer in opened:  # at the image's scale (0.5 um), over it
        assert type(layer).__name__ == "Image"
        assert layer.data[0].shape == cells[0].data[0].shape
        np.testing.assert_array_equal(layer.scale, cells[0].scale)
