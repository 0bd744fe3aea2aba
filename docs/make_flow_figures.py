"""Regenerate docs/img/flow_strip.png, flow_chart.png and flow_heatmap.jpg (docs/flow.md's
pictures): a synthetic moving crowd counted with lines by the shipped model, the overlay
video's first seconds as a strip, its in/out chart and its occupancy heat map.

    .venv/bin/python docs/make_flow_figures.py [--checkpoint crowd-r18]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="crowd-r18")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    from maskfocal.cli import main as maskfocal
    from maskfocal.media import VideoFrames

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        frames = round(args.seconds * 25)
        assert maskfocal(["data", "synth", "--video", "--out", str(folder / "clips"),
                          "--sequences", "1", "--frames", str(frames), "--people", "60",
                          "--seed", "3"]) == 0
        clip = folder / "clips" / "synth-flow-00"
        assert maskfocal(["count", str(clip / "clip.mp4"), "--lines", str(clip / "lines.json"),
                          "--checkpoint", args.checkpoint, "--no-heatmap",
                          "--out", str(folder / "out")]) == 0
        picked = []
        with VideoFrames(folder / "out" / "clip.overlay.mp4") as video:
            wanted = [round(k * (frames - 1) / 3) for k in range(4)]
            for index, _, frame in video:
                if index in wanted:
                    picked.append(np.asarray(frame.to_image().resize((480, 360),
                                                                     Image.LANCZOS)))
        strip = np.concatenate([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=255)
                                for p in picked], axis=1)[:, :-4]
        Image.fromarray(strip).quantize(256).save(HERE / "img" / "flow_strip.png",
                                                  optimize=True)
        Image.open(folder / "out" / "clip.flow.png").save(HERE / "img" / "flow_chart.png",
                                                          optimize=True)
        Image.open(folder / "out" / "clip.heatmap.png").convert("RGB").save(
            HERE / "img" / "flow_heatmap.jpg", quality=85)
        print((clip / "crossings.json").read_text())
        print((folder / "out" / "clip.counts.csv").read_text().splitlines()[-1])
    for name in ("flow_strip.png", "flow_chart.png", "flow_heatmap.jpg"):
        print(HERE / "img" / name)


if __name__ == "__main__":
    main()
