"""The ``maskfocal`` command: parse, build, call. User mistakes exit with status 2, one line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from maskfocal.errors import MaskfocalError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError("width and height must be at least 16")
    return width, height


def _data_stats(args: argparse.Namespace) -> int:
    from maskfocal.data.readers import read_dataset
    from maskfocal.data.stats import dataset_stats, format_stats

    dataset = read_dataset(args.format, args.root, split=args.split, strict=args.strict)
    stats = dataset_stats(dataset)
    if args.json:
        print(json.dumps(stats))
    else:
        print(format_stats(stats))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from maskfocal.data.synthetic import SyntheticConfig, write_mot

    config = SyntheticConfig(width=args.size[0], height=args.size[1],
                             max_count=args.max_count)
    splits = {name: count for name, count in
              (("train", args.train), ("val", args.val), ("test", args.test)) if count > 0}
    heads = write_mot(args.out, splits, seed=args.seed, config=config, progress=True)
    for split, count in splits.items():
        print(f"{split}: {count} images, {heads[split]:,} heads")
    print(f"written to {args.out} (read it with --format mot --root {args.out})")
    return 0


def _data_show(args: argparse.Namespace) -> int:
    from maskfocal.data.readers import read_dataset
    from maskfocal.visualize import draw_annotated

    dataset = read_dataset(args.format, args.root, split=args.split, strict=args.strict)
    if not dataset.images:
        raise MaskfocalError(f"{args.root}: no images to show")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    indices = args.index or list(range(min(args.count, len(dataset.images))))
    for index in indices:
        if not 0 <= index < len(dataset.images):
            raise MaskfocalError(f"--index {index} is outside 0..{len(dataset.images) - 1}")
        annotated = dataset.images[index]
        path = out / f"{index:05d}_{Path(annotated.name).stem}.png"
        draw_annotated(annotated).save(path)
        print(path)
    return 0


def _train(args: argparse.Namespace) -> int:
    from maskfocal.engine import train_from_files

    result = train_from_files(args.config, args.out, args.overrides, resume=args.resume,
                              progress=not args.quiet)
    if "test" in result:
        test = result["test"]
        print(f"test MAE {test['mae']:.2f}  RMSE {test['rmse']:.2f}  NAE {test['nae']:.3f}  "
              f"F1@8px {test['f1_sigma8']:.3f}  (threshold {test['threshold']:.2f})")
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: the main process speaks
        print(f"checkpoints in {args.out} (best.pt, last.pt)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from maskfocal.evaluation import evaluate_checkpoint

    metrics = evaluate_checkpoint(args.checkpoint, args.format, args.root, split=args.split,
                                  save_dir=args.save_dir, progress=not args.json)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"images {metrics['images']}  MAE {metrics['mae']:.2f}  RMSE {metrics['rmse']:.2f}"
              f"  NAE {metrics['nae']:.3f}  (threshold {metrics['threshold']:.2f})")
        for sigma in ("4", "8"):
            print(f"sigma {sigma} px: precision {metrics[f'precision_sigma{sigma}']:.3f}  "
                  f"recall {metrics[f'recall_sigma{sigma}']:.3f}  "
                  f"F1 {metrics[f'f1_sigma{sigma}']:.3f}")
    return 0


def _count(args: argparse.Namespace) -> int:
    from maskfocal.errors import DatasetError
    from maskfocal.inference import Counter, expand_inputs
    from maskfocal.video import count_video, is_video
    from maskfocal.visualize import contact_sheet, draw_overlay

    videos = [Path(item) for item in args.inputs if is_video(item)]
    images = expand_inputs([i for i in args.inputs if not is_video(i)]) if \
        len(videos) < len(args.inputs) else []
    for video in videos:
        if not video.is_file():
            raise MaskfocalError(f"{video}: no such file")
    tiling = {"tile_above": None if args.no_tiles else args.tile_above,
              "tile_size": args.tile_size, "tile_overlap": args.tile_overlap}
    counter = Counter.from_checkpoint(args.checkpoint, device=args.device, **tiling)
    heatmap = args.heatmap and counter.has_heatmap
    out = Path(args.out) if args.out else None
    results, skipped, sheet = [], 0, []
    for path in images:
        try:
            pixels = counter.read_image(path)
        except DatasetError as error:
            print(f"warning: skipped {error}", file=sys.stderr)
            skipped += 1
            continue
        result = counter(pixels, return_heatmap=heatmap and out is not None)
        results.append({"image": str(path), **result.to_json()})
        if not args.json:
            print(f"{path}: {result.count}")
        if out is not None:
            picture = draw_overlay(pixels, result)
            _save_png(picture, out / f"{path.stem}.png")
            sheet.append((picture, f"{path.name}: {result.count}"))
    if out is not None and images:
        _write_counts_csv(out / "counts.csv", results)
        if len(sheet) > 1:
            _save_png(contact_sheet(sheet), out / "contact_sheet.png")
    if skipped:
        print(f"{skipped} of {len(images)} images could not be read and were skipped",
              file=sys.stderr)
    for video in videos:
        folder = out or Path("runs/count")
        summary = count_video(video, counter, every=args.every,
                              csv_path=folder / f"{video.stem}.csv",
                              video_path=None if args.no_video else folder / f"{video.stem}.mp4",
                              heatmap=heatmap)
        line = (f"{video}: {summary.frames_counted} of {summary.frames_read} frames counted, "
                f"mean {summary.mean_count:.1f} heads -> {summary.csv_path}")
        if summary.video_path:
            line += f", {summary.video_path}"
        print(line, file=sys.stderr if args.json else sys.stdout)
        results.append({"video": str(video), "csv": str(summary.csv_path),
                        "frames_counted": summary.frames_counted,
                        "mean_count": round(summary.mean_count, 3)})
    if images and out is not None:
        print(f"overlays, counts.csv{' and contact_sheet.png' if len(sheet) > 1 else ''} "
              f"written to {out}", file=sys.stderr)
    if args.json:
        single = len(images) + len(videos) == 1 and results
        print(json.dumps(results[0] if single else results))
    return 0


def _save_png(picture, path: Path) -> None:
    import io

    from maskfocal.io import atomic_write_bytes

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _write_counts_csv(path: Path, results: list[dict]) -> None:
    from maskfocal.io import atomic_write_text

    lines = ["image,count"] + [f"{json.dumps(r['image'])},{r['count']}" for r in results]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _export(args: argparse.Namespace) -> int:
    from maskfocal.export import export_onnx

    path = export_onnx(args.checkpoint, args.out)
    print(f"wrote {path} (decoding runs outside the graph; count with "
          f"`maskfocal count IMAGES --checkpoint {path}`)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from maskfocal.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, overrides=args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from maskfocal import __version__
    from maskfocal.data.readers import READERS

    parser = _Parser(prog="maskfocal", description="Count people by detecting their heads.")
    parser.add_argument("--version", action="version", version=f"maskfocal {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = commands.add_parser("data", help="read, summarise, draw or synthesise datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True,
                                        parser_class=_Parser)

    def dataset_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--format", required=True, choices=sorted(READERS),
                         help="the dataset's own file format")
        sub.add_argument("--root", required=True, help="the dataset's folder")
        sub.add_argument("--split", help="one split (default: every split found)")
        sub.add_argument("--strict", action="store_true",
                         help="fail on a damaged file instead of skipping it")

    stats = data_commands.add_parser("stats", help="count images and heads")
    dataset_arguments(stats)
    stats.add_argument("--json", action="store_true",
                       help="print one JSON object as the last line")
    stats.set_defaults(run=_data_stats)

    show = data_commands.add_parser("show", help="draw images with their annotated heads")
    dataset_arguments(show)
    show.add_argument("--out", required=True, help="folder for the PNG files")
    show.add_argument("--index", type=int, nargs="*", help="which images (default: the first)")
    show.add_argument("--count", type=int, default=4, help="how many from the start")
    show.set_defaults(run=_data_show)

    synth = data_commands.add_parser("synth", help="write synthetic crowds in the MOT layout")
    synth.add_argument("--out", required=True, help="folder to write")
    synth.add_argument("--train", type=int, default=200, help="training images")
    synth.add_argument("--val", type=int, default=50, help="validation images")
    synth.add_argument("--test", type=int, default=50, help="test images")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT")
    synth.add_argument("--max-count", type=int, default=1500,
                       help="most people placed in one image")
    synth.set_defaults(run=_data_synth)

    train = commands.add_parser("train", help="train a counter")
    train.add_argument("--config", help="YAML config (see configs/base.yaml)")
    train.add_argument("--out", default="runs/latest", help="folder for checkpoints and logs")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. train.epochs=5 model.backbone=resnet34")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="score a checkpoint on a dataset")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--format", required=True, choices=["synthetic", *sorted(READERS)],
                          help="a reader, or synthetic: the test scenes of the checkpoint's "
                               "config")
    evaluate.add_argument("--root", help="the dataset's folder (not for synthetic)")
    evaluate.add_argument("--split", help="one split (default: every split found)")
    evaluate.add_argument("--json", action="store_true",
                          help="print one JSON object as the last line")
    evaluate.add_argument("--save-dir", help="write per_image.csv and metrics.json here")
    evaluate.set_defaults(run=_eval)

    count = commands.add_parser("count", help="count heads in images, folders or videos")
    count.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="image files, folders of images, or video files")
    count.add_argument("--checkpoint", required=True,
                       help="a .pt checkpoint, or a .onnx file from `maskfocal export`")
    count.add_argument("--json", action="store_true",
                       help="last line: JSON ({count, points} or a list of those)")
    count.add_argument("--out", "--save-overlay", dest="out", metavar="DIR",
                       help="write overlays, counts.csv and a contact sheet here (videos: "
                            "STEM.csv and STEM.mp4; default runs/count)")
    count.add_argument("--no-heatmap", dest="heatmap", action="store_false",
                       help="overlays without the blended heatmap")
    count.add_argument("--every", type=int, default=10, metavar="N",
                       help="videos: count every N-th frame (default 10)")
    count.add_argument("--no-video", action="store_true",
                       help="videos: write only the CSV, not the annotated video")
    count.add_argument("--tile-above", type=int, default=2048, metavar="PIXELS",
                       help="count images whose longer side exceeds this in tiles at full "
                            "resolution (default 2048)")
    count.add_argument("--tile-size", type=int, default=1024, metavar="PIXELS")
    count.add_argument("--tile-overlap", type=int, default=128, metavar="PIXELS")
    count.add_argument("--no-tiles", action="store_true",
                       help="never tile: scale large images down to data.max_eval_side")
    count.add_argument("--device", default="auto", help="auto, cpu or cuda")
    count.set_defaults(run=_count)

    export = commands.add_parser("export", help="export a checkpoint (ONNX)")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--format", default="onnx", choices=["onnx"])
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.set_defaults(run=_export)

    demo = commands.add_parser("demo", help="the main job on built-in synthetic data")
    demo.add_argument("--out", default="demo_out", help="folder for everything it writes")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("overrides", nargs="*", metavar="key=value",
                      help="overrides of configs/demo.yaml, e.g. train.epochs=2")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except MaskfocalError as error:
        print(f"maskfocal: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskfocal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
