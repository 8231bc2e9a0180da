"""The napari plugin: a dock widget that segments an image layer, and sample images.

Registered by ``flowseg/napari.yaml`` (npe2) and installed with the ``napari`` extra. The widget
segments the chosen image layer, or the slice of a stack that the viewer shows (or, with "3-D",
the whole stack as one volume), in a background thread, and adds a Labels layer aligned with the
image; optionally the flows and the cell probability as image layers. Only this module imports
napari and Qt: the rest of flowseg runs without them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image
from napari.qt.threading import thread_worker

log = logging.getLogger(__name__)

BUNDLED = "bundled default"


class SegmentWidget(Container):
    """Dock widget: pick an image layer and settings, press Segment, get a Labels layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer the widget is docked in (napari passes it).
    """

    def __init__(self, viewer: Any) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.model = ComboBox(label="model", choices=[BUNDLED, "checkpoint file"], value=BUNDLED)
        self.checkpoint = FileEdit(label="checkpoint", filter="*.pt", mode=FileDialogMode.EXISTING_FILE,
                                   visible=False)
        self.diameter = FloatSpinBox(label="diameter (0 = auto)", value=0.0, min=0.0,
                                     max=2000.0, step=1.0)
        self.cellprob = FloatSpinBox(label="cell probability threshold", value=0.0, min=-8.0,
                                     max=8.0, step=0.5)
        self.flow = FloatSpinBox(label="flow threshold (0 = off)", value=0.4, min=0.0, max=5.0,
                                 step=0.1)
        self.volume = CheckBox(text="whole stack in 3-D", value=False)
        self.extra = CheckBox(text="add flows and cell probability", value=False)
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(min=0, max=0, visible=False)  # min = max: busy, no percentage
        self.status = Label(value="")
        self.extend([self.image, self.model, self.checkpoint, self.diameter, self.cellprob,
                     self.flow, self.volume, self.extra, self.run_button, self.progress,
                     self.status])
        self.model.changed.connect(lambda value: setattr(self.checkpoint, "visible",
                                                         value != BUNDLED))
        self.run_button.changed.connect(self.run)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        self._nets: dict[str, Any] = {}
        self.worker: Any = None

    def _image_layers(self, _: Any = None) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def run(self) -> Any:
        """Start segmenting in a background thread; return the worker (``finished`` when done)."""
        layer = self.image.value
        if layer is None:
            self.status.value = "no image layer to segment"
            return None
        data, where = self._data_to_segment(layer)
        settings = self._settings()
        self.run_button.enabled, self.progress.visible = False, True
        self.status.value = f"segmenting {layer.name} ..."
        worker = _segment_in_thread(data, settings)
        worker.returned.connect(lambda result: self._add_layers(layer, where, result))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.worker = worker
        worker.start()
        return worker

    def _data_to_segment(self, layer: Image) -> tuple[npt.NDArray[Any], tuple[int, ...]]:
        """Return the layer's 2-D image (the slice on screen for a stack) and where it sits."""
        data = np.asarray(layer.data)
        spatial = data.ndim - (1 if layer.rgb else 0)
        if spatial == 2 or (self.volume.value and spatial == 3):
            return data, ()
        point = layer.world_to_data(self.viewer.dims.point)
        where = tuple(int(np.clip(round(p), 0, n - 1))
                      for p, n in zip(point[: spatial - 2], data.shape, strict=False))
        return data[where], where

    def _settings(self) -> dict[str, Any]:
        from flowseg.representation.masks import MaskConfig

        path = None if self.model.value == BUNDLED else str(self.checkpoint.value)
        if str(path) not in self._nets:  # load each checkpoint once
            from flowseg.inference.pipeline import load_model

            self._nets[str(path)] = load_model(path)
        net = self._nets[str(path)]
        thresholds = {**net.metadata.get("thresholds", {}), "cellprob_threshold":
                      self.cellprob.value, "flow_threshold": self.flow.value}
        return {"net": net, "masks": MaskConfig(**thresholds),
                "diameter": self.diameter.value or None, "volume": self.volume.value}

    def _add_layers(self, layer: Image, where: tuple[int, ...], result: dict[str, Any]) -> None:
        labels = result["labels"]
        name = f"{layer.name} labels"
        scale, translate = layer.scale[-labels.ndim:], layer.translate[-labels.ndim:]
        if where:  # one slice of a stack: fill it into a stack-shaped Labels layer
            shape = layer.data.shape[: len(where)] + labels.shape
            if name not in self.viewer.layers or self.viewer.layers[name].data.shape != shape:
                if name in self.viewer.layers:
                    self.viewer.layers.remove(name)
                self.viewer.add_labels(np.zeros(shape, np.uint32), name=name,
                                       scale=layer.scale[: len(shape)],
                                       translate=layer.translate[: len(shape)])
            target = self.viewer.layers[name]
            target.data[where] = labels
            target.refresh()
        elif name in self.viewer.layers and self.viewer.layers[name].data.shape == labels.shape:
            self.viewer.layers[name].data = labels
        else:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            self.viewer.add_labels(labels, name=name, scale=scale, translate=translate)
        if self.extra.value and "flows" in result:
            self.viewer.add_image(result["flows"], name=f"{layer.name} flows", scale=scale,
                                  translate=translate, channel_axis=0, visible=False)
            self.viewer.add_image(result["cellprob"], name=f"{layer.name} cell probability",
                                  scale=scale, translate=translate, colormap="magma",
                                  visible=False)
        self.status.value = (f"{layer.name}: {int(labels.max())} cells"
                             + (f" in slice {where}" if where else "")
                             + f", diameter {result['diameter']}, {result['seconds']:.1f} s")

    def _failed(self, err: Exception) -> None:
        self.status.value = f"failed: {str(err).splitlines()[0] if str(err) else type(err)}"
        log.warning("segmentation failed: %s", err)

    def _done(self) -> None:
        self.run_button.enabled, self.progress.visible = True, False


@thread_worker
def _segment_in_thread(data: npt.NDArray[Any], settings: dict[str, Any]) -> dict[str, Any]:
    from flowseg.inference.pipeline import segment_with_outputs
    from flowseg.inference.volume import segment_volume

    start = time.perf_counter()
    net, masks, diameter = settings["net"], settings["masks"], settings["diameter"]
    if settings["volume"] and data.ndim == 3:
        labels = segment_volume(data, net, masks=masks, diameter=diameter)
        return {"labels": labels, "diameter": f"{diameter} px" if diameter else "auto",
                "seconds": time.perf_counter() - start}
    result = segment_with_outputs(data, net, masks=masks, diameter=diameter)
    return {"labels": result.labels, "flows": result.flows, "cellprob": result.cellprob,
            "diameter": f"{result.diameter:.1f} px", "seconds": time.perf_counter() - start}


def sample_nuclei() -> list[tuple[npt.NDArray[Any], dict[str, Any], str]]:
    """Synthetic fluorescent nuclei (flowseg.training.synthetic), 384 x 384, and their true labels.

    Returns
    -------
    layers : list of (data, options, layer type)
        An image layer and a labels layer, as napari's sample-data contract asks.
    """
    return _sample("nuclei")


def sample_tissue() -> list[tuple[npt.NDArray[Any], dict[str, Any], str]]:
    """Synthetic H&E-stained tissue (flowseg.training.synthetic), 384 x 384, and its true labels.

    Returns
    -------
    layers : list of (data, options, layer type)
    """
    return _sample("he")


def _sample(modality: str) -> list[tuple[npt.NDArray[Any], dict[str, Any], str]]:
    from flowseg.training.synthetic import make_sample

    image, labels = make_sample((384, 384), modality, seed=7)
    rgb = modality == "he"
    if not rgb and image.ndim == 3:  # fluorescence is rendered as gray RGB: one channel will do
        image = image[..., 0]
    return [(image, {"name": f"{modality} (synthetic)", "rgb": rgb}, "image"),
            (labels, {"name": f"{modality} true labels", "visible": False}, "labels")]


def manifest_path() -> Path:
    """Return the npe2 manifest's path (for tests and for ``npe2 validate``)."""
    return Path(__file__).resolve().parents[1] / "napari.yaml"
