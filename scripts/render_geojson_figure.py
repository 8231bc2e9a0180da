"""Draw the cells of a ``--save-geojson`` file over its image: what QuPath shows after import.

    python scripts/render_geojson_figure.py [--out benchmarks/figures/geojson_cells.png]

Segments one stained-tissue image of the ../shared/data_real training split (DSB 2018, CC0) with
``flowseg predict --save-geojson``, reads the GeoJSON back, and draws every polygon's rings (holes
too) on the image enlarged 2x: the outlines come from the file, not from the label image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import imagecodecs
import numpy as np
from skimage.draw import line

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import real_pairs

ZOOM = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/figures/geojson_cells.png"))
    parser.add_argument("--pick", type=int, default=3)
    args = parser.parse_args()
    tissue = [p for p in real_pairs("train") if p[1] == "tissue"]
    image_path = tissue[args.pick % len(tissue)][2]
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "flowseg", "predict", "-i", str(image_path), "-o",
                        folder, "--save-geojson", "-q"], check=True)
        features = json.loads((Path(folder) / f"{image_path.stem}_cells.geojson").read_text())
    image = np.asarray(imagecodecs.imread(str(image_path)))[..., :3]
    big = np.repeat(np.repeat(image, ZOOM, axis=0), ZOOM, axis=1).copy()
    for feature in features["features"]:
        geometry = feature["geometry"]
        polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else \
            geometry["coordinates"]
        for rings in polygons:
            for ring in rings:
                points = np.rint(np.array(ring) * ZOOM).astype(int)
                for (x0, y0), (x1, y1) in itertools.pairwise(points):
                    rr, cc = line(y0, x0, y1, x1)
                    keep = (rr < big.shape[0]) & (cc < big.shape[1])
                    big[rr[keep], cc[keep]] = (255, 230, 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(imagecodecs.png_encode(big))
    print(f"{args.out}: {len(features['features'])} cells of {image_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
