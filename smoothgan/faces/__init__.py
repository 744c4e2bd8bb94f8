"""Faces in real photos: detection, landmarks, the CelebA-HQ crop, and paste-back (numpy, OpenCV, LiteRT)."""

from __future__ import annotations

from smoothgan.faces.aligner import Face, align, align_many, as_photo, paste_all
from smoothgan.faces.crop import celebahq_quad, crop_to_source, feather_mask, paste_quads, warp_quad

__all__ = ["Face", "align", "align_many", "as_photo", "paste_all", "celebahq_quad", "crop_to_source",
           "feather_mask", "paste_quads", "warp_quad"]
