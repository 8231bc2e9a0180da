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
