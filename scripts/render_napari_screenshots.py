"""Screenshots of the napari plugin for README.md, taken headless.

    xvfb-run -a python scripts/render_napari_screenshots.py

Opens a napari viewer with the synthetic H&E sample, docks flowseg's widget, segments the image
with the bundled model, and saves the whole window to docs/napari_widget.png (before) and
docs/napari_result.png (after).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import imagecodecs
import numpy as np

warnings.simplefilter("ignore")

import napari  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from flowseg.apps.napari_plugin import SegmentWidget, sample_tissue  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs"


def save(viewer: napari.Viewer, name: str) -> None:
    pixels = np.asarray(viewer.screenshot(canvas_only=False, flash=False))[..., :3]
    OUT.mkdir(exist_ok=True)
    (OUT / name).write_bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels)))
    print(f"wrote {OUT / name} {pixels.shape}")


def main() -> int:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 820)
    image, options, _ = sample_tissue()[0]
    viewer.add_image(image, **options)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="flowseg: segment cells", area="right")
    for _ in range(5):
        QApplication.processEvents()
    viewer.reset_view()
    save(viewer, "napari_widget.png")
    worker = widget.run()
    done = []
    worker.finished.connect(lambda: done.append(True))
    while not done:
        QApplication.processEvents()
    for _ in range(20):
        QApplication.processEvents()
    viewer.layers[f"{options['name']} labels"].contour = 2
    viewer.reset_view()
    QApplication.processEvents()
    save(viewer, "napari_result.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
