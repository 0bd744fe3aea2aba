"""What zones cost when counting: the same images counted with and without a zone file, in
one run, and the zone step alone.

    .venv/bin/python benchmarks/zones_overhead.py [--images 6] [--checkpoint crowd-r18]

Zones: three polygons (one of 40 corners) and one mask the size of the image, with a ground
homography (people per m²), the heaviest kind.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--checkpoint", default="crowd-r18")
    args = parser.parse_args()
    import torch

    from maskfocal import Counter
    from maskfocal.data.synthetic import SyntheticConfig, generate_scene
    from maskfocal.pretrained import checkpoint_or_shipped
    from maskfocal.zones import load_zones

    torch.set_num_threads(2)
    width, height = (int(v) for v in args.size.split("x"))
    images = [generate_scene(SyntheticConfig(width=width, height=height), seed=n).pixels
              for n in range(args.images)]
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    circle = np.c_[width / 2 + width / 3 * np.cos(angles), height / 2 + height / 3 *
                   np.sin(angles)].round(1).tolist()
    with tempfile.TemporaryDirectory() as folder:
        mask = Image.new("L", (width, height))
        ImageDraw.Draw(mask).ellipse([width / 4, height / 4, width * 3 / 4, height * 3 / 4],
                                     fill=255)
        mask.save(Path(folder) / "pen.png")
        (Path(folder) / "zones.json").write_text(json.dumps({
            "zones": [{"name": "left", "polygon": [[0, 0], [width / 2, 0],
                                                   [width / 2, height], [0, height]]},
                      {"name": "top", "polygon": [[0, 0], [width, 0], [width, height / 3],
                                                  [0, height / 3]]},
                      {"name": "ring", "polygon": circle},
                      {"name": "pen", "mask": "pen.png"}],
            "ground": {"image": [[0, height], [width, height], [width * 0.7, 0],
                                 [width * 0.3, 0]],
                       "metres": [[0, 0], [20, 0], [20, 40], [0, 40]]}}))
        zones = load_zones(Path(folder) / "zones.json")
    counter = Counter.from_checkpoint(checkpoint_or_shipped(args.checkpoint), device="cpu")
    counter(images[0])  # warm up
    timings = {"without zones": [], "with zones": []}
    zone_step = []
    for pixels in images:
        for label, options in (("without zones", {}), ("with zones", {"zones": zones})):
            started = time.perf_counter()
            result = counter(pixels, **options)
            timings[label].append(time.perf_counter() - started)
        started = time.perf_counter()
        zones.density(zones.count(result.points, height, width))
        zone_step.append(time.perf_counter() - started)
    without, with_zones = (float(np.sum(timings[k])) for k in timings)
    print(f"{args.images} images of {args.size}, {args.checkpoint}, "
          f"{result.count} heads in the last image; 4 zones (a 40-corner polygon, a mask, "
          "a homography)")
    print(f"counting without zones {without / args.images * 1000:8.1f} ms/image")
    print(f"counting with zones    {with_zones / args.images * 1000:8.1f} ms/image "
          f"(ratio {with_zones / without:.3f})")
    print(f"the zone step alone    {np.mean(zone_step) * 1000:8.2f} ms/image "
          f"({np.mean(zone_step) / (without / args.images) * 100:.2f} % of counting)")


if __name__ == "__main__":
    main()
