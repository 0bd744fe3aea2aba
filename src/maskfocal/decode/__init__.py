"""Decoding: raw maps or boxes -> points, boxes, scores, count."""

from .centernet import Detections, decode_centernet

__all__ = ["Detections", "decode_centernet"]
