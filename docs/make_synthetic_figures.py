"""Regenerate docs/synthetic_sparse.png and docs/synthetic_dense.png (docs/datasets.md's pictures).

    .venv/bin/python docs/make_synthetic_figures.py
"""

from __future__ import annotations

from pathlib import Path

from maskfocal.data.synthetic import SyntheticConfig, generate_scene
from maskfocal.visualize import draw_annotated

HERE = Path(__file__).resolve().parent
SCENES = {"synthetic_sparse.png": (3, 0, 30), "synthetic_dense.png": (5, 0, 1200)}


def main() -> None:
    config = SyntheticConfig()
    for name, (seed, index, people) in SCENES.items():
        scene = generate_scene(config, seed, index, count=people)
        draw_annotated(scene).save(HERE / name, optimize=True)
        print(f"{HERE / name}: {scene.num_heads} annotated heads of {people} people placed")


if __name__ == "__main__":
    main()
