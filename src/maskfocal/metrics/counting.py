"""Counting errors (``shared/MFL.md``, "Metrics")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def counting_errors(pred_counts: Sequence[float] | np.ndarray,
                    gt_counts: Sequence[float] | np.ndarray) -> dict[str, float]:
    """MAE, RMSE and NAE of predicted against true counts, one value per image.

    MAE = mean |C - C_hat|; RMSE = sqrt(mean (C - C_hat)^2) (crowd-counting papers call it MSE);
    NAE = mean |C - C_hat| / C over the images with C > 0 (NaN when there are none).
    """
    pred = np.asarray(pred_counts, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt_counts, dtype=np.float64).reshape(-1)
    if pred.shape != gt.shape:
        raise ValueError(f"{len(pred)} predicted counts for {len(gt)} images")
    if len(gt) == 0:
        raise ValueError("counting errors need at least one image")
    error = pred - gt
    populated = gt > 0
    nae = float(np.mean(np.abs(error[populated]) / gt[populated])) if populated.any() else \
        float("nan")
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2))),
            "nae": nae}
