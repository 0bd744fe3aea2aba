"""The ``maskfocal`` command: parse, build, call. User mistakes exit with status 2, one line."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from maskfocal.errors import MaskfocalError
from maskfocal.fileio import OutputFolder, dumps_json, save_png
from maskfocal.pretrained import DEFAULT_MODEL, MODELS, checkpoint_or_shipped


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
    if max(width, height) > MAX_SCENE_SIDE:  # each scene is held in memory whole
        raise argparse.ArgumentTypeError(f"width and height must be at most {MAX_SCENE_SIDE}, "
                                         f"got {width}x{height}")
    return width, height


MAX_SCENE_SIDE = 8192  # a synthetic scene of 8192 x 8192 holds 200 MB of pixels
MAX_PORT = 65535


def _whole(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number of at least ``minimum`` (tests sweep ``minimum``) and
    at most ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.minimum = minimum  # type: ignore[attr-defined]
    return parse


def _data_stats(args: argparse.Namespace) -> int:
    from maskfocal.data.readers import read_dataset
    from maskfocal.data.stats import dataset_stats, format_stats

    dataset = read_dataset(args.format, args.root, split=args.split, strict=args.strict)
    stats = dataset_stats(dataset)
    if args.json:
        print(dumps_json(stats))
    else:
        print(format_stats(stats))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from maskfocal.data.synthetic import SyntheticConfig, clear_mot, write_mot

    if args.video:
        return _data_synth_video(args)

    if args.min_count > args.max_count:
        raise MaskfocalError(f"--min-count {args.min_count} is above --max-count "
                             f"{args.max_count}")
    config = SyntheticConfig(width=args.size[0], height=args.size[1],
                             min_count=args.min_count, max_count=args.max_count,
                             empty_fraction=0.0 if args.min_count else
                             SyntheticConfig.empty_fraction)
    splits = {name: count for name, count in
              (("train", args.train), ("val", args.val), ("test", args.test)) if count > 0}
    if not splits:
        raise MaskfocalError("--train, --val and --test are all 0: nothing to write")
    folder = OutputFolder(args.out, "data synth", overwrite=args.overwrite)
    folder.claim_all(splits)  # a split folder the user made is not written into
    for split in splits:  # an earlier set here: its frames go, so none is left without rows
        cleared = clear_mot(folder.path / split)
        if cleared:
            print(f"{split}: removed {cleared} files of an earlier synthetic set", file=sys.stderr)
    heads = write_mot(folder.path, splits, seed=args.seed, config=config, progress=True)
    for split, count in splits.items():
        print(f"{split}: {count} images, {heads[split]:,} heads")
    print(f"written to {args.out} (read it with --format mot --root {args.out})")
    return 0


def _data_synth_video(args: argparse.Namespace) -> int:
    from maskfocal.data.moving import MovingConfig
    from maskfocal.video import write_moving_crowds

    width, height = args.size
    if width < 64 or height < 64:
        raise MaskfocalError(f"--size {width}x{height}: moving crowds need at least 64x64")
    config = MovingConfig(width=width, height=height, frames=args.frames, fps=args.fps,
                          people=args.people)
    folder = OutputFolder(args.out, "data synth", overwrite=args.overwrite)
    names = [f"synth-flow-{number:02d}" for number in range(args.sequences)]
    folder.claim_all(names)  # a sequence folder the user made is not written into
    for summary in write_moving_crowds(folder.path, config, sequences=args.sequences,
                                       seed=args.seed, progress=True):
        crossings = ", ".join(f"{name} in {c['in']} out {c['out']}"
                              for name, c in summary["crossings"].items())
        print(f"{summary['sequence']}: {summary['frames']} frames, "
              f"{summary['heads_per_frame']:.1f} heads a frame, {summary['people']} people; "
              f"true crossings: {crossings}")
    print(f"written to {args.out}: count a clip with `maskfocal count {args.out}/"
          f"{names[0]}/clip.mp4 --lines {args.out}/{names[0]}/lines.json`")
    return 0


def _data_show(args: argparse.Namespace) -> int:
    from maskfocal.data.readers import read_dataset
    from maskfocal.visualize import draw_annotated

    folder = OutputFolder(args.out, "data show")
    dataset = read_dataset(args.format, args.root, split=args.split, strict=args.strict)
    if not dataset.images:
        raise MaskfocalError(f"{args.root}: no images to show")
    indices = args.index or list(range(min(args.count, len(dataset.images))))
    for index in indices:
        if not 0 <= index < len(dataset.images):
            raise MaskfocalError(f"--index {index} is outside 0..{len(dataset.images) - 1}")
    for index in indices:
        annotated = dataset.images[index]
        path = folder.claim(f"{index:05d}_{Path(annotated.name).stem}.png", rename=True)
        save_png(draw_annotated(annotated), path)
        print(path)
    return 0


def _train(args: argparse.Namespace) -> int:
    from maskfocal.engine import default_run_folder, train_from_files

    out = args.out
    if out is None:
        if args.resume:
            raise MaskfocalError("--resume needs --out: the folder of the run to continue")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise MaskfocalError("under torchrun, give --out so that every process writes to "
                                 "the same folder")
        out = default_run_folder()
        print(f"writing the run to {out} (--out to choose)", file=sys.stderr)
    overrides = list(args.overrides)
    if args.init is not None:
        overrides.append(f"model.init_from={args.init}")
    result = train_from_files(args.config, out, overrides, resume=args.resume,
                              overwrite=args.overwrite, progress=not args.quiet)
    if "test" in result:
        test = result["test"]
        print(f"test MAE {test['mae']:.2f}  RMSE {test['rmse']:.2f}  NAE {test['nae']:.3f}  "
              f"F1@8px {test['f1_sigma8']:.3f}  (threshold {test['threshold']:.2f})")
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: the main process speaks
        print(f"checkpoints in {out} (best.pt, last.pt)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from maskfocal.device import set_threads
    from maskfocal.evaluation import evaluate_checkpoint, write_submission

    set_threads(args.threads)

    if args.submit is not None:
        if args.out is None:
            raise MaskfocalError("--submit needs --out: the folder for the submission files")
        if args.root is None:
            raise MaskfocalError("--submit needs --root: the dataset's folder")
        written = write_submission(checkpoint_or_shipped(args.checkpoint), args.submit,
                                   args.format, args.root, split=args.split or "test",
                                   out=args.out, overwrite=args.overwrite,
                                   device=args.device, progress=not args.json,
                                   backend=args.backend)
        if args.json:
            print(dumps_json(written))
        else:
            print(f"{written['images']} images: " + ", ".join(written["files"]))
        return 0
    if args.out is not None:
        raise MaskfocalError("--out is the folder of --submit; use --save-dir for the report")
    metrics = evaluate_checkpoint(checkpoint_or_shipped(args.checkpoint), args.format,
                                  args.root, split=args.split,
                                  save_dir=args.save_dir, overwrite=args.overwrite,
                                  device=args.device, progress=not args.json,
                                  protocol=args.protocol, gt_loc=args.gt_loc,
                                  backend=args.backend, **_inference_changes(args))
    if args.json:
        print(dumps_json(metrics))
    else:
        print(f"images {metrics['images']}  MAE {metrics['mae']:.2f}  RMSE {metrics['rmse']:.2f}"
              f"  NAE {_number(metrics['nae'], '.3f')}  (threshold {metrics['threshold']:.2f})")
        for sigma in ("4", "8"):
            print(f"sigma {sigma} px: precision {metrics[f'precision_sigma{sigma}']:.3f}  "
                  f"recall {metrics[f'recall_sigma{sigma}']:.3f}  "
                  f"F1 {metrics[f'f1_sigma{sigma}']:.3f}")
        _print_protocol(metrics)
    return 0


def _print_protocol(metrics: dict) -> None:
    """The leaderboard figures of --protocol, for people (--json has them all)."""
    if "nwpu_official" in metrics:
        loc, counting = (metrics["nwpu_official"][k] for k in ("localization", "counting"))
        print("NWPU-Crowd official protocol (integer points and radii):")
        for name in ("small", "large"):
            per_class = " ".join(f"{r:.3f}" for r in loc[f"recall_per_class_{name}"])
            print(f"  sigma_{name[0]}: precision {loc[f'precision_{name}']:.4f}  recall "
                  f"{loc[f'recall_{name}']:.4f}  F1 {loc[f'f1_{name}']:.4f}  recall per head "
                  f"size 0-5 [{per_class}] mean {loc[f'recall_class_mean_{name}']:.4f}")
        overall = counting["overall"]
        line = f"  MAE {overall['mae']:.3f}  MSE {overall['mse']:.3f}  NAE {overall['nae']:.4f}"
        if "mmae" in counting:
            line += f"  mMAE (scene levels) {counting['mmae']['mmae_level']:.3f}"
        print(line)
    if "jhu" in metrics:
        print("JHU-Crowd++ protocol:")
        for group in ("density", "weather"):
            for name, value in metrics["jhu"][group].items():
                print(f"  {group} {name}: MAE {value['mae']:.2f}  MSE {value['mse']:.2f}  "
                      f"({value['images']} images)")


def _serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MaskfocalError("maskfocal serve needs FastAPI and uvicorn: "
                             "pip install 'maskfocal[serve]'") from None
    from maskfocal.service import ServeSettings, serve

    if not (args.max_upload_mb > 0 and math.isfinite(args.max_upload_mb)):
        raise MaskfocalError(f"--max-upload-mb must be a number > 0, got {args.max_upload_mb}")
    settings = ServeSettings(checkpoint=None if args.checkpoint is None else
                             str(checkpoint_or_shipped(args.checkpoint)),
                             max_upload_bytes=int(args.max_upload_mb * 2**20),
                             max_pixels=args.max_pixels, max_side=args.max_side,
                             max_in_flight=args.max_in_flight, max_waiting=args.max_waiting,
                             timeout_s=args.timeout, receive_timeout_s=args.receive_timeout,
                             max_connections=args.max_connections,
                             allowed_hosts=tuple(args.allowed_hosts) if args.allowed_hosts
                             else None, inference=_serve_options(args), device=args.device,
                             backend=args.backend, threads=args.threads)
    serve(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


def _serve_options(args: argparse.Namespace) -> dict:
    """The inference options given to ``serve``, as its workers receive them (JSON)."""
    from maskfocal.inference.options import KEEP

    return {name: value for name, value in _inference_changes(args).items()
            if value is not KEEP and (value is not None or name == "tile_above")}


def _number(value: float, spec: str) -> str:
    """A metric for people: ``n/a`` where it is undefined (NAE with no heads)."""
    return format(value, spec) if math.isfinite(value) else "n/a"


def _count(args: argparse.Namespace) -> int:
    from maskfocal.device import set_threads
    from maskfocal.errors import DatasetError
    from maskfocal.inference import Counter, expand_inputs
    from maskfocal.inference.records import CountRecord
    from maskfocal.video import count_video, is_video
    from maskfocal.visualize import contact_sheet, draw_overlay

    set_threads(args.threads)
    options = _inference_changes(args)
    videos = [Path(item) for item in args.inputs if is_video(item)]
    images = expand_inputs([i for i in args.inputs if not is_video(i)]) if \
        len(videos) < len(args.inputs) else []
    for video in videos:
        if not video.is_file():
            raise MaskfocalError(f"{video}: no such file")
    lines = _count_lines(args, videos)  # every line checked before anything is written
    every = args.every if args.every is not None else (1 if lines is not None else 10)
    zones = None
    if args.zones is not None:
        from maskfocal.zones import check_images, load_zones

        zones = load_zones(args.zones)
        check_images(zones, images)  # before the model loads, not after half the folder
    folder = None
    keep = not args.replace  # --replace: this command's earlier files there are replaced
    if args.out is not None or videos:
        folder = OutputFolder(args.out or "runs/count", "count")
        folder.protect([*images, *videos])  # never written over, whoever wrote them
    counter = Counter.from_checkpoint(checkpoint_or_shipped(args.checkpoint),
                                      device=args.device, backend=args.backend, progress=True,
                                      **options)
    heatmap = args.heatmap and counter.has_heatmap
    overlays = args.out is not None
    results, skipped, sheet, table = [], 0, [], []
    for path in images:
        try:  # without overlays the counter reads the file (a huge JPEG read smaller)
            pixels = counter.read_image(path) if overlays else None
            result = counter(path if pixels is None else pixels,
                             return_heatmap=heatmap and overlays, zones=zones)
        except DatasetError as error:
            print(f"warning: skipped {error}", file=sys.stderr)
            skipped += 1
            continue
        counted = CountRecord(result)
        record = {"image": str(path), **counted.to_json(points=True)}
        if not args.json:
            line = f"{path}: {result.count}"
            if result.zones is not None:
                line += "  (" + ", ".join(
                    f"{name}: {n}" + (f" = {result.density[name]:.2f}/m²" if result.density
                                      else "") for name, n in result.zones.items()) + ")"
            print(line)
        if overlays:
            overlay = folder.claim(f"{path.stem}.overlay.png", rename=True, keep_earlier=keep)
            picture = draw_overlay(pixels, result, zones=zones)
            save_png(picture, overlay)
            sheet.append((picture, f"{path.name}: {result.count}"))
            record["overlay"] = overlay.name
            table.append((str(path), overlay.name, counted))
        results.append(record)
    written = []
    if overlays and results:
        written.append(folder.claim("counts.csv", rename=True, keep_earlier=keep))
        _write_counts_csv(written[-1], table, zones.names if zones is not None else [])
        if len(sheet) > 1:
            written.append(folder.claim("contact_sheet.png", rename=True, keep_earlier=keep))
            save_png(contact_sheet(sheet), written[-1])
    if skipped:
        print(f"{skipped} of {len(images)} images could not be read and were skipped",
              file=sys.stderr)
    for video in videos:
        csv_path = folder.claim(f"{video.stem}.counts.csv", rename=True, keep_earlier=keep)
        video_path = None if args.no_video else folder.claim(f"{video.stem}.overlay.mp4",
                                                             rename=True, keep_earlier=keep)
        plot_path = (folder.claim(f"{video.stem}.zones.png", rename=True, keep_earlier=keep)
                     if zones is not None else None)
        flow_path, occupancy_path = ((folder.claim(f"{video.stem}.flow.png", rename=True,
                                                   keep_earlier=keep),
                                      folder.claim(f"{video.stem}.heatmap.png", rename=True,
                                                   keep_earlier=keep))
                                     if lines is not None else (None, None))
        summary = count_video(video, counter, every=every, csv_path=csv_path,
                              video_path=video_path, heatmap=heatmap, progress=True,
                              zones=zones, plot_path=plot_path, lines=lines,
                              flow_path=flow_path, occupancy_path=occupancy_path)
        line = (f"{video}: {summary.frames_counted} of {summary.frames_read} frames counted, "
                f"mean {summary.mean_count:.1f} heads -> {summary.csv_path}")
        if summary.video_path:
            line += f", {summary.video_path}"
        for extra in (summary.plot_path, summary.flow_path, summary.heatmap_path):
            if extra:
                line += f", {extra}"
        if summary.zone_peaks:
            line += "; peaks: " + ", ".join(f"{name} {n} at {t:.1f} s" for name, (n, t)
                                            in summary.zone_peaks.items())
        if summary.lines is not None:
            line += "; " + "; ".join(f"{name}: in {c['in']}, out {c['out']}, net {c['net']}"
                                     for name, c in summary.lines.items())
        print(line, file=sys.stderr if args.json else sys.stdout)
        record = {"video": str(video), "csv": str(summary.csv_path),
                  "frames_counted": summary.frames_counted,
                  "mean_count": round(summary.mean_count, 3)}
        if summary.zone_peaks:
            record["zone_peaks"] = {name: {"count": n, "time_s": round(t, 3)}
                                    for name, (n, t) in summary.zone_peaks.items()}
        if summary.lines is not None:
            record["lines"] = summary.lines
        results.append(record)
    if written:
        print(f"overlays and {', '.join(p.name for p in written)} written to {folder.path}",
              file=sys.stderr)
    if args.json:
        single = len(images) + len(videos) == 1 and results
        print(dumps_json(results[0] if single else results))
    if images and skipped == len(images) and not videos:
        raise MaskfocalError(f"none of the {len(images)} images could be read")
    return 0


def _count_archive(args: argparse.Namespace) -> int:
    from maskfocal.archive import count_archive

    summary = count_archive(
        args.source, args.out, args.checkpoint, points=args.points,
        workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker, batch_size=args.batch_size,
        address=args.address, column=args.column, flush_rows=args.flush_every,
        zones=args.zones, retry_errors=args.retry_errors, backend=args.backend,
        **_inference_changes(args))
    line = (f"{summary.listed} images in {args.source}: {summary.already} already in "
            f"{summary.results}, {summary.counted} counted now")
    if summary.counted:
        line += (f" ({summary.errors} could not be read or counted; "
                 f"{summary.images_per_second:.2f} images/s)")
    if summary.error_rows:
        line += (f"; {summary.results} holds {summary.error_rows} error rows "
                 "(--retry-errors counts them again)")
    print(line)
    return 0


def _write_counts_csv(path: Path, rows: list[tuple[str, str, object]],
                      zones: list[str] = ()) -> None:
    """``counts.csv``: one row per image (its path, its overlay's name, its
    :class:`~maskfocal.inference.records.CountRecord`)."""
    import csv
    import io

    from maskfocal.fileio import atomic_write_text, csv_safe
    from maskfocal.inference.records import zone_columns

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    dense = any(record.density() is not None for _, _, record in rows)
    writer.writerow(["image", "count", "overlay", *zone_columns(list(zones), dense)])
    writer.writerows([csv_safe(image), record.count, csv_safe(overlay),
                      *record.zone_values(list(zones), dense)]
                     for image, overlay, record in rows)
    atomic_write_text(path, buffer.getvalue())


def _export(args: argparse.Namespace) -> int:
    from maskfocal.export import export_onnx

    path = export_onnx(checkpoint_or_shipped(args.checkpoint), args.out,
                       overwrite=args.overwrite)
    print(f"wrote {path} (decoding runs outside the graph; count with "
          f"`maskfocal count IMAGES --checkpoint {path}`)")
    return 0


def _mine(args: argparse.Namespace) -> int:
    from maskfocal.mining import mine_to_file

    summary = mine_to_file(args.checkpoint, args.out, config_path=args.config,
                           overrides=args.overrides, threshold=args.threshold,
                           min_distance=args.min_distance, device=args.device,
                           overwrite=args.overwrite, progress=not args.quiet)
    print(f"{summary['false_heads']} false heads on {summary['images_mined']} training images "
          f"-> {args.out} (data.hard_negatives={args.out} data.hard_negative_crops=0.2 to "
          "train on them)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from maskfocal.demo import run_demo

    run_demo(Path(args.out), seed=args.seed, overrides=args.overrides)
    return 0


SHIPPED = ", ".join(MODELS)


def build_parser() -> argparse.ArgumentParser:
    from maskfocal import __version__

    parser = _Parser(prog="maskfocal", description="Count people by detecting their heads.")
    parser.add_argument("--version", action="version", version=f"maskfocal {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_data, _add_train, _add_mine, _add_eval, _add_count, _add_count_archive,
                _add_export, _add_serve, _add_demo):
        add(commands)
    return parser


def _add_data(commands) -> None:
    """``maskfocal data stats|show|synth``."""
    from maskfocal.data.readers import READERS
    from maskfocal.data.synthetic import SyntheticConfig

    scene = SyntheticConfig()  # the generator's own defaults
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
    show.add_argument("--out", required=True,
                      help="folder for the PNG files (existing files get new names)")
    show.add_argument("--index", type=_whole(0), nargs="*",
                      help="which images, by position (default: the first --count)")
    show.add_argument("--count", type=_whole(1), default=4,
                      help="how many from the start (default 4)")
    show.set_defaults(run=_data_show)

    synth = data_commands.add_parser("synth", help="write synthetic crowds in the MOT layout")
    synth.add_argument("--out", required=True, help="folder to write")
    synth.add_argument("--overwrite", action="store_true",
                       help="write into split folders that maskfocal did not write")
    synth.add_argument("--train", type=_whole(0), default=200, help="training images")
    synth.add_argument("--val", type=_whole(0), default=50, help="validation images")
    synth.add_argument("--test", type=_whole(0), default=50, help="test images")
    synth.add_argument("--seed", type=_whole(0), default=0,
                       help="scene stream: the same seed draws the same scenes")
    synth.add_argument("--size", type=_size, default=(scene.width, scene.height),
                       help=f"WIDTHxHEIGHT (default {scene.width}x{scene.height})")
    synth.add_argument("--min-count", type=_whole(0), default=scene.min_count,
                       help="fewest people placed in one image (above 0: no empty images)")
    synth.add_argument("--max-count", type=_whole(1), default=scene.max_count,
                       help=f"most people placed in one image (default {scene.max_count})")
    synth.add_argument("--video", action="store_true",
                       help="moving crowds instead: clips with true tracks (MOT gt.txt), "
                            "clip.mp4, lines.json and the true crossings (crossings.json)")
    synth.add_argument("--sequences", type=_whole(1), default=2,
                       help="--video: how many clips (default 2)")
    synth.add_argument("--frames", type=_whole(1), default=250,
                       help="--video: frames per clip (default 250)")
    synth.add_argument("--fps", type=_whole(1, 240), default=25,
                       help="--video: frame rate (default 25)")
    synth.add_argument("--people", type=_whole(0), default=40,
                       help="--video: people in view at a time, on average (default 40)")
    synth.set_defaults(run=_data_synth)


def _add_train(commands) -> None:
    """``maskfocal train``."""
    train = commands.add_parser("train", help="train a counter")
    train.add_argument("--config", help="YAML config (see configs/base.yaml)")
    train.add_argument("--out", help="folder for checkpoints and logs (default: runs/train, "
                                      "or runs/train-2, -3, ... when taken)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in OUT (default: refuse)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--init", metavar="MODEL",
                       help=f"start from these weights (model.init_from): a .pt, a .safetensors "
                            f"or a shipped model ({SHIPPED}); with a fresh optimiser. To "
                            "continue a shipped model, use a recipe with a lower learning rate "
                            "(configs/crowd_lite0_continue.yaml)")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. train.epochs=5 model.backbone=resnet34")
    train.set_defaults(run=_train)


def _add_mine(commands) -> None:
    """``maskfocal mine``."""
    from maskfocal.mining import MIN_DISTANCE

    mine = commands.add_parser("mine", help="find a model's false heads on its training "
                                            "images (hard negatives for the next run)")
    mine.add_argument("--checkpoint", required=True,
                      help=f"a .pt, .safetensors or a shipped model's name ({SHIPPED})")
    mine.add_argument("--config", help="whose training images (default: the checkpoint's own "
                                       "config); its validation images are never mined")
    mine.add_argument("--out", required=True, help="the JSON file to write (data.hard_negatives)")
    mine.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    mine.add_argument("--threshold", type=float,
                      help="score a head needs (default: the model's calibrated threshold)")
    mine.add_argument("--min-distance", type=float, default=MIN_DISTANCE, metavar="PIXELS",
                      help="how far from every annotated head a false head lies (default "
                           f"{MIN_DISTANCE:g} px of the image)")
    mine.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    mine.add_argument("--quiet", action="store_true", help="no progress bar")
    mine.add_argument("overrides", nargs="*", metavar="key=value",
                      help="config overrides, e.g. data.extra_train=[]")
    mine.set_defaults(run=_mine)


def _add_eval(commands) -> None:
    """``maskfocal eval``."""
    from maskfocal.data.readers import READERS

    evaluate = commands.add_parser("eval", help="score a checkpoint on a dataset")
    evaluate.add_argument("--checkpoint", help=f"a .pt checkpoint of `maskfocal train` or "
                          f".safetensors weights or a shipped model's name ({SHIPPED}; "
                          f"default {DEFAULT_MODEL})")
    evaluate.add_argument("--format", required=True, choices=["synthetic", *sorted(READERS)],
                          help="a reader, or synthetic: the test scenes of the checkpoint's "
                               "config")
    evaluate.add_argument("--root", help="the dataset's folder (not for synthetic)")
    evaluate.add_argument("--split", help="one split (default: test where the dataset has one, "
                                           "else every image; "
                                           "synthetic: test)")
    evaluate.add_argument("--json", action="store_true",
                          help="print one JSON object as the last line")
    evaluate.add_argument("--save-dir", help="write per_image.csv and metrics.json here")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace per_image.csv/metrics.json (or submission files) that "
                               "maskfocal eval did not write")
    evaluate.add_argument("--protocol", default="maskfocal",
                          choices=["maskfocal", "nwpu-official", "jhu"],
                          help="add a leaderboard's figures: nwpu-official (integer points and "
                               "radii as the NWPU-Crowd scorer reads them, recall per head "
                               "size, mMAE) or jhu (errors per density level and weather); "
                               "default: maskfocal (float protocol only)")
    evaluate.add_argument("--gt-loc", metavar="FILE",
                          help="nwpu-official: NWPU's own val_gt_loc.txt (its integer radii); "
                               "default: radii from the head boxes")
    evaluate.add_argument("--submit", choices=["nwpu"],
                          help="write leaderboard submission files for every image of --split "
                               "(default test, labels not needed) into --out")
    evaluate.add_argument("--out", metavar="DIR", help="the folder for --submit's files")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    _add_inference_options(evaluate)
    _add_threads(evaluate)
    evaluate.set_defaults(run=_eval)


def _add_count(commands) -> None:
    """``maskfocal count``."""
    count = commands.add_parser("count", help="count heads in images, folders or videos")
    count.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="image files, folders of images, or video files")
    count.add_argument("--checkpoint", help="a .pt checkpoint, .safetensors weights or a .onnx "
                       f"file from `maskfocal export` or a shipped model's name "
                       f"({SHIPPED}; default {DEFAULT_MODEL})")
    count.add_argument("--json", action="store_true",
                       help="last line: JSON ({count, points} or a list of those)")
    count.add_argument("--out", "--save-overlay", dest="out", metavar="DIR",
                       help="write STEM.overlay.png, counts.csv and a contact sheet here "
                            "(videos: STEM.counts.csv and STEM.overlay.mp4; default "
                            "runs/count); existing files get new names, never replaced "
                            "(--replace: count's own earlier ones are)")
    count.add_argument("--replace", action="store_true",
                       help="replace the files an earlier `maskfocal count` wrote in --out "
                            "(never a file it did not write); default: new names beside them")
    count.add_argument("--no-heatmap", dest="heatmap", action="store_false",
                       help="overlays without the blended heatmap")
    count.add_argument("--every", type=_whole(1), default=None, metavar="N",
                       help="videos: count every N-th frame (default 10; 1 with --lines)")
    count.add_argument("--no-video", action="store_true",
                       help="videos: write only the CSV, not the annotated video")
    count.add_argument("--zones", metavar="FILE",
                       help="a JSON zone file: heads per named polygon or mask (and people "
                            "per m² with a ground scale) in the output, CSV and overlays; "
                            "see docs/usage.md#zones")
    count.add_argument("--lines", metavar="FILE",
                       help="videos: a JSON lines file; heads are tracked and counted in and "
                            "out through each line (console, --json, CSV, STEM.flow.png, "
                            "STEM.heatmap.png, the overlay); see docs/usage.md#lines")
    _add_inference_options(count)
    _add_threads(count)
    count.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    count.set_defaults(run=_count)


def _count_lines(args: argparse.Namespace, videos: list[Path]):
    """``--lines``: the lines (a one-line error for a file that is not a lines file, a still
    image among the inputs, or a line outside a video's frame), or None."""
    if args.lines is None:
        return None
    from maskfocal.flow import load_lines
    from maskfocal.media import VideoFrames, is_video

    lines = load_lines(args.lines)
    stills = [item for item in args.inputs if not is_video(item)]
    if stills:
        raise MaskfocalError(f"{stills[0]}: --lines counts people crossing lines in a video; "
                             "this is not one")
    for video in videos:
        with VideoFrames(video) as source:
            height, width = source.size
        for line in lines:
            line.check(height, width, where=f"{args.lines} on {video}: ")
    return lines


def _scale(text: str) -> float | str:
    """``--scale``: ``auto`` or a number > 0."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected auto or a number > 0, got {text!r}")
    return value


def _add_threads(parser) -> None:
    parser.add_argument("--threads", type=_whole(1), default=None, metavar="N",
                        help="CPU threads for the model, torch and ONNX Runtime alike "
                             "(default: the CPUs this process may use, by its affinity and "
                             "cgroup quota" + (", divided among --workers)" if parser.prog
                                               .endswith("serve") else ")"))


def _add_inference_options(parser) -> None:
    """The inference options (:class:`~maskfocal.inference.InferenceOptions`), the same flags
    in count, eval, serve and count-archive; each defaults to the model's own."""
    from maskfocal.device import BACKENDS
    from maskfocal.inference.options import InferenceOptions

    default = InferenceOptions()
    group = parser.add_argument_group("inference options (default: the model's own)")
    group.add_argument("--threshold", type=float, metavar="SCORE",
                       help="the score a head needs (default: the model's calibrated one)")
    group.add_argument("--scale", type=_scale, metavar="auto|FACTOR",
                       help="resize each photo by FACTOR before counting (default: the "
                            "model's decode.input_scale, chosen on its validation), or auto: "
                            "a first pass at 1, then the scale (1 to 2) that brings the "
                            "spacing of the heads found to the model's decode.scale_target "
                            "(18 px where it has none)")
    group.add_argument("--max-eval-side", type=_whole(64), metavar="PIXELS",
                       help="a photo counted whole is scaled down until its longer side, at "
                            "the input scale, fits this (default: the model's "
                            f"data.max_eval_side, {default.max_eval_side} for the shipped "
                            "models)")
    group.add_argument("--tile-above", type=_whole(0), default=argparse.SUPPRESS,
                       metavar="PIXELS",
                       help="count photos whose longer side, at the input scale, exceeds "
                            "this in tiles at that scale (default: never; they are scaled "
                            "down to --max-eval-side, which counts phone photos best). count, "
                            "eval, serve and count-archive give the same heads for the same "
                            "setting")
    group.add_argument("--tile-size", type=_whole(64), metavar="PIXELS",
                       help=f"side of each tile at the input scale (default {default.tile_size})")
    group.add_argument("--tile-overlap", type=_whole(0), metavar="PIXELS",
                       help="least overlap of neighbouring tiles, so a head on a border is "
                            f"seen whole (default {default.tile_overlap}; less than the tile "
                            "size minus 4)")
    group.add_argument("--no-tiles", action="store_true",
                       help="never tile (the default): scale large photos down to "
                            "--max-eval-side")
    group.add_argument("--backend", choices=BACKENDS, default=None,
                       help="what runs the network: auto (default; $MASKFOCAL_BACKEND sets "
                            "another) is ONNX Runtime on a CPU, the model exported once into "
                            "the cache folder, and PyTorch on CUDA or for Faster R-CNN; torch "
                            "or onnx insist. The heads are the same")


def _inference_changes(args: argparse.Namespace) -> dict:
    """The inference options given on the command line (``None``: the model's own), checked
    before any model loads."""
    from maskfocal.inference.options import KEEP, InferenceOptions

    tile_above = None if args.no_tiles else getattr(args, "tile_above", KEEP)  # absent: not given
    changes = {"threshold": args.threshold, "scale": args.scale,
               "max_eval_side": args.max_eval_side, "tile_above": tile_above,
               "tile_size": args.tile_size, "tile_overlap": args.tile_overlap}
    InferenceOptions().replace(**changes)  # a bad combination: one line, before any work
    return changes


def _add_count_archive(commands) -> None:
    """``maskfocal count-archive``; defaults are :func:`maskfocal.archive.count_archive`'s."""
    from maskfocal.archive import FLUSH_ROWS

    archive = commands.add_parser(
        "count-archive", help="count a whole archive on Ray Data into Parquet (resumable)",
        description="Count every image of SOURCE that RESULTS does not hold yet, on a local "
                    "Ray started here or a running cluster, one Parquet row per image. Run it "
                    "again after an interruption: it counts only what is missing.")
    archive.add_argument("source", metavar="SOURCE",
                         help="a folder (recursive), a glob ('photos/**/*.jpg'), or a "
                              "manifest: .txt (one path per line) or .csv/.parquet (--column)")
    archive.add_argument("--out", required=True, metavar="RESULTS",
                         help="the results folder (a Parquet dataset); a new or empty folder, "
                              "or one this command wrote with the same model and settings")
    archive.add_argument("--checkpoint", help="as for count (default: the shipped "
                         f"{DEFAULT_MODEL})")
    archive.add_argument("--points", action="store_true",
                         help="keep each head's (x, y) in a points column")
    archive.add_argument("--zones", metavar="FILE",
                         help="a JSON zone file: heads per zone in a zones column (and "
                              "people per m² in density with a ground scale)")
    archive.add_argument("--column", default="path",
                         help="the paths' column in a .csv or .parquet manifest (default path)")
    archive.add_argument("--address", metavar="ADDRESS",
                         help="a running Ray cluster (e.g. ray://head:10001 or auto; default "
                              "$RAY_ADDRESS, else a local Ray started and stopped here)")
    archive.add_argument("--workers", type=_whole(1), metavar="N",
                         help="counting actors, each loading the model once (default: as many "
                              "as the cluster's CPUs, or GPUs, allow)")
    archive.add_argument("--cpus-per-worker", type=float, default=1, metavar="N",
                         help="CPUs each actor reserves, and its torch threads (default 1)")
    archive.add_argument("--gpus-per-worker", type=float, default=0, metavar="N",
                         help="GPUs each actor reserves; > 0 runs the model on CUDA "
                              "(default 0)")
    archive.add_argument("--batch-size", type=_whole(1), default=4, metavar="N",
                         help="images per actor call (default 4)")
    archive.add_argument("--flush-every", type=_whole(1), default=FLUSH_ROWS, metavar="ROWS",
                         help="rows per Parquet file; an interruption loses at most these "
                              f"(or the last minute's) (default {FLUSH_ROWS})")
    archive.add_argument("--retry-errors", action="store_true",
                         help="count the images whose rows are errors again (a file missing "
                              "then, present now); each keeps one row, the new one")
    _add_inference_options(archive)
    archive.set_defaults(run=_count_archive)


def _add_tile_above(parser, default: int | None) -> None:
    parser.add_argument("--tile-above", type=_whole(0), default=default, metavar="PIXELS",
                        help="count images whose longer side, at the model's input scale, "
                             "exceeds this in tiles at that scale (default: never; they are "
                             "scaled down to data.max_eval_side, which counts phone photos "
                             "best). count, eval and serve give the same heads for the same "
                             "setting")


def _add_export(commands) -> None:
    """``maskfocal export``."""
    export = commands.add_parser("export", help="export a checkpoint (ONNX)")
    export.add_argument("--checkpoint", help="a .pt checkpoint of `maskfocal train` or "
                        f".safetensors weights or a shipped model's name ({SHIPPED}; "
                        f"default {DEFAULT_MODEL})")
    export.add_argument("--format", default="onnx", choices=["onnx"],
                        help="the exported format (onnx)")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--overwrite", action="store_true",
                        help="replace OUT even when it is not an earlier maskfocal export")
    export.set_defaults(run=_export)


def _add_serve(commands) -> None:
    """``maskfocal serve``; every default is the service's own."""
    from maskfocal.service import ServeSettings

    settings = ServeSettings()
    serve = commands.add_parser("serve", help="count over HTTP: an API and a web page")
    serve.add_argument("--checkpoint", help="a .pt checkpoint or .safetensors weights "
                       f"or a shipped model's name ({SHIPPED}; default {DEFAULT_MODEL})")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; "
                            "0.0.0.0 for every interface)")
    serve.add_argument("--port", type=_whole(1, MAX_PORT), default=8000,
                       help="default 8000")
    serve.add_argument("--workers", type=_whole(1), default=1,
                       help="processes, each with its own copy of the model (default 1)")
    megabytes = settings.max_upload_bytes / 2**20
    serve.add_argument("--max-upload-mb", type=float, default=megabytes,
                       help=f"largest upload in MiB (default {megabytes:g}; over it: 413)")
    serve.add_argument("--max-pixels", type=_whole(1), default=settings.max_pixels,
                       help=f"largest image in pixels (default {settings.max_pixels:,}; over "
                            "it: 413)")
    serve.add_argument("--max-side", type=_whole(1), default=settings.max_side,
                       help=f"longest image side in pixels (default {settings.max_side:,}; "
                            "over it: 413)")
    serve.add_argument("--max-in-flight", type=_whole(1), default=settings.max_in_flight,
                       help="images counted at once per worker (default "
                            f"{settings.max_in_flight})")
    serve.add_argument("--max-waiting", type=_whole(0), default=settings.max_waiting,
                       help="requests waiting per worker; more get 503 (default "
                            f"{settings.max_waiting})")
    serve.add_argument("--timeout", type=float, default=settings.timeout_s,
                       help="seconds a request may take, waiting included (default "
                            f"{settings.timeout_s:g})")
    serve.add_argument("--receive-timeout", type=float, default=settings.receive_timeout_s,
                       metavar="SECONDS",
                       help="seconds a request may take to arrive whole, headers and body; "
                            f"slower connections are closed (default "
                            f"{settings.receive_timeout_s:g})")
    serve.add_argument("--max-connections", type=_whole(1), default=settings.max_connections,
                       help="open connections per worker; more get 503 at once (default "
                            f"{settings.max_connections})")
    serve.add_argument("--allowed-hosts", nargs="+", metavar="HOST",
                       help="answer only requests whose Host header is one of these (e.g. "
                            "crowds.example.org; default: any)")
    _add_inference_options(serve)
    _add_threads(serve)
    serve.add_argument("--device", default=settings.device,
                       help=f"cpu, cuda or auto (default {settings.device})")
    serve.set_defaults(run=_serve)


def _add_demo(commands) -> None:
    """``maskfocal demo``."""
    demo = commands.add_parser("demo", help="the main job on built-in synthetic data")
    demo.add_argument("--out", default="demo_out", help="folder for everything it writes")
    demo.add_argument("--seed", type=_whole(0), default=0,
                      help="weights, data order and augmentation all follow from it")
    demo.add_argument("overrides", nargs="*", metavar="key=value",
                      help="overrides of the demo config (src/maskfocal/demo.yaml), e.g. "
                           "train.epochs=2")
    demo.set_defaults(run=_demo)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # usage mistakes (2), --help and --version (0): a status
        return int(exit_.code or 0)
    try:
        return int(args.run(args) or 0)
    except MaskfocalError as error:
        print(f"maskfocal: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no (permissions, disk full, ...)
        where = f"{error.filename}: " if error.filename else ""
        print(f"maskfocal: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskfocal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
