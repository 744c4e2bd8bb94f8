"""Real photos in folder jobs: every face aligned to the model's crop, translated, and optionally pasted back.

With ``align`` a photo becomes F sources (its faces, CelebA-HQ aligned at the model's size, largest first; see
:mod:`smoothgan.faces`). They are translated in the same cross-image batches as any source. The outputs are then
either one result per face (``<name>_face<k>``) or, with ``paste_back``, one full-size photo per frame with every
face warped back into place (feathered edge; pixels outside the faces unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from smoothgan.errors import InputError
from smoothgan.results import Result

if TYPE_CHECKING:
    from smoothgan.faces import Face
    from smoothgan.translator import Translator

@dataclass
class AlignedPhoto:
    """A decoded photo and its aligned faces (largest first)."""

    photo: np.ndarray  # uint8 [H, W, 3]
    faces: list["Face"] = field(default_factory=list)

    def face_records(self) -> list[dict[str, Any]]:
        """Quad, landmarks and score of every face, as ``smoothgan align`` writes them."""
        return [face.to_json() for face in self.faces]


def align_photo(translator: "Translator", image: np.ndarray, name: str,
                max_faces: Optional[int] = None) -> tuple[np.ndarray, AlignedPhoto]:
    """Faces of ``image`` as model input ``[F, 3, S, S]`` plus what paste-back needs; InputError without a face."""
    from smoothgan import faces

    found = faces.align(image, size=translator.config.img_size, max_faces=max_faces)
    if not found:
        raise InputError(f"no face found in '{name}' (translate it without --align, or crop the face yourself)")
    x = np.concatenate([translator.preprocess(face.crop) for face in found])
    return x, AlignedPhoto(image, found)


def pasted_result(result: Result, aligned: AlignedPhoto) -> Result:
    """One full-size photo per frame with every face's translated crop pasted back; the photo is the source.

    ``result`` holds the photo's F faces as sources ([F, K, S, S, 3]); the returned result has one source (the
    photo) and K frames, and the faces' quads in its metadata.
    """
    from smoothgan import faces

    frames = np.stack([faces.paste_all(aligned.photo, aligned.faces, list(result.images[:, k]))
                       for k in range(result.images.shape[1])])
    meta = {**result.metadata, "faces": aligned.face_records(), "paste_back": True}
    return Result(frames[None], result.styles[:1], aligned.photo[None], meta)


def face_results(result: Result, aligned: AlignedPhoto, name: PurePosixPath) -> list[tuple[PurePosixPath, Result]]:
    """``(<name>_face<k>, result of face k)`` for every face: crops in, crops out, each with its quad recorded."""
    parts = []
    for k, face in enumerate(aligned.faces):
        one = result.item(k)
        one.metadata = {**one.metadata, "face": k, **face.to_json()}
        parts.append((name.with_name(f"{name.name}_face{k}"), one))
    return parts


__all__ = ["AlignedPhoto", "align_photo", "face_results", "pasted_result"]
