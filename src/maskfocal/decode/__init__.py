"""Decoding: raw maps or boxes -> points, boxes, scores, count."""

from .boxes import box_postprocess, boxes_to_detections, feature_sizes
from .centernet import decode_centernet
from .detections import SCORE_FLOOR, Detections

__all__ = ["SCORE_FLOOR", "Detections", "box_postprocess", "boxes_to_detections",
           "decode_centernet", "feature_sizes"]
