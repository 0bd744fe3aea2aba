"""What tracking and lines cost when counting a video: the same clip counted every frame
with and without ``--lines`` (tracking, line counts, occupancy), in one process.

    .venv/bin/python benchmarks/flow_speed.py [--frames 40] [--people 120] [--checkpoint crowd-r18]

The clip is a synthetic moving crowd (``maskfocal data synth --video``) at 640x480 and 25
frames/s; both runs write the CSV and no overlay video. Prints frames/s of each and their
ratio (a ratio, not absolute times: this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--people", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default="crowd-r18")
    parser.add_argument("--out", default="benchmarks/results/flow_speed.json")
    args = parser.parse_args()
    import torch

    from maskfocal import Counter
    from maskfocal.data.moving import MovingConfig
    from maskfocal.flow import load_lines
    from maskfocal.pretrained import checkpoint_or_shipped
    from maskfocal.video import count_video, write_moving_crowds

    torch.set_num_threads(args.threads)
    counter = Counter.from_checkpoint(checkpoint_or_shipped(args.checkpoint), device="cpu")
    timings: dict[str, list[float]] = {"without lines": [], "with lines": []}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_moving_crowds(folder, MovingConfig(people=args.people, frames=args.frames))
        clip = folder / "synth-flow-00" / "clip.mp4"
        lines = load_lines(folder / "synth-flow-00" / "lines.json")
        counter(np.zeros((480, 640, 3), np.uint8))  # warm up
        for repeat in range(args.repeats):  # alternately, so both see the same machine
            for name, given in (("without lines", None), ("with lines", lines)):
                started = time.perf_counter()
                count_video(clip, counter, every=1, csv_path=folder / f"{repeat}.csv",
                            lines=given)
                timings[name].append(args.frames / (time.perf_counter() - started))
    fps = {name: max(values) for name, values in timings.items()}
    result = {"frames": args.frames, "people_in_view": args.people, "size": "640x480",
              "checkpoint": args.checkpoint, "threads": args.threads,
              "frames_per_s": fps,
              "ratio_with_to_without": fps["with lines"] / fps["without lines"]}
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
