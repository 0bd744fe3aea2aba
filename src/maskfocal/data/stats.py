"""Summary statistics of a dataset, as printed by ``maskfocal data stats``."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .readers import Dataset


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Images, heads, heads per image, image sizes, and what was dropped, repaired or skipped.

    Heads are counted over labelled images only (NWPU-Crowd's test split has no labels).
    """
    labelled = [image for image in dataset.images if image.labelled]
    counts = np.array([image.num_heads for image in labelled], dtype=np.int64)
    widths = np.array([image.width for image in dataset.images], dtype=np.int64)
    heights = np.array([image.height for image in dataset.images], dtype=np.int64)
    sizes = Counter(f"{image.width}x{image.height}" for image in dataset.images)
    splits = Counter(str(image.meta.get("split", "")) for image in dataset.images)
    with_boxes = sum(image.boxes is not None for image in labelled)
    box_heads = sum(image.num_heads for image in labelled if image.boxes is not None)

    def summary(values: np.ndarray) -> dict[str, float]:
        if len(values) == 0:
            return {"min": 0, "mean": 0.0, "max": 0}
        return {"min": int(values.min()), "mean": round(float(values.mean()), 2),
                "max": int(values.max())}

    return {
        "images": len(dataset.images),
        "labelled_images": len(labelled),
        "heads": int(counts.sum()),
        "heads_per_image": summary(counts),
        "empty_images": int((counts == 0).sum()),
        "images_with_boxes": int(with_boxes),
        "boxes": int(box_heads),
        "splits": dict(splits),
        "width": summary(widths),
        "height": summary(heights),
        "common_sizes": dict(sizes.most_common(3)),
        "repaired_or_dropped": dict(dataset.report.counts),
        "skipped_files": len(dataset.report.skipped),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A readable multi-line table of :func:`dataset_stats`."""
    per_image = stats["heads_per_image"]
    lines = [
        f"images            {stats['images']:,}"
        + (f" ({stats['labelled_images']:,} labelled)"
           if stats["labelled_images"] != stats["images"] else ""),
        f"heads             {stats['heads']:,}",
        f"heads per image   min {per_image['min']:,}  mean {per_image['mean']:,.1f}  "
        f"max {per_image['max']:,}",
        f"empty images      {stats['empty_images']:,}",
        f"boxes             {stats['boxes']:,} in {stats['images_with_boxes']:,} images",
        "splits            " + ", ".join(f"{k or '-'} {v:,}" for k, v in stats["splits"].items()),
        f"width             {stats['width']['min']}..{stats['width']['max']} px, "
        f"height {stats['height']['min']}..{stats['height']['max']} px",
        "common sizes      " + ", ".join(f"{k} ({v})" for k, v in stats["common_sizes"].items()),
    ]
    repaired = stats["repaired_or_dropped"]
    lines.append("repaired/dropped  " + ("none" if not repaired else ""))
    lines += [f"  {what}: {amount:,}" for what, amount in sorted(repaired.items())]
    lines.append(f"skipped files     {stats['skipped_files']:,}")
    return "\n".join(lines)
