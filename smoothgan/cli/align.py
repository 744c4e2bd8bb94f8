"""``smoothgan align``: CelebA-HQ aligned face crops (and their quads) from real photos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from smoothgan.cli.app import command, console, err_console, progress_bar
from smoothgan.errors import InputError, SmoothganError


@command("align")
def align_command(
    images: Annotated[list[Path], typer.Argument(help="Photos to align (any format Pillow reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    size: Annotated[int, typer.Option("--size", min=8, help="Side of the aligned crops in pixels.")] = 256,
    max_faces: Annotated[Optional[int], typer.Option("--max-faces", min=1,
                                                     help="Keep only the N largest faces per photo.")] = None,
    allow_none: Annotated[bool, typer.Option("--allow-none",
                                             help="A photo without a face is not an error.")] = False,
) -> None:
    """Find the faces in photos and crop each the way CelebA-HQ was cropped.

    Examples:

    1. `smoothgan align selfie.jpg --out faces/`

    2. `smoothgan align photos/*.jpg --out faces/ --size 512 --max-faces 1 --allow-none`

    For every photo: OUT/<stem>_face<k>.png (k = 0 is the largest face) and OUT/<stem>.json with, per face,
    `quad` (the crop's corners in photo pixels: top-left, bottom-left, bottom-right, top-right), `landmarks`
    (image-left eye, image-right eye, nose, mouth left, mouth right) and the detector `score`. A photo without a
    face prints one line and makes the exit status non-zero (unless --allow-none); the other photos still run.
    """
    from smoothgan.faces import align
    from smoothgan.fileio import write_json_atomic
    from smoothgan.images import load, save_image

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder '{out}': {exc.strerror or exc}") from exc
    failures = 0
    stems: dict[str, Path] = {}
    total_faces = 0
    with progress_bar("aligning", total=len(images)) as advance:
        for path in images:
            advance()
            try:
                if path.stem in stems:
                    raise InputError(f"'{path}' has the same name as '{stems[path.stem]}'; its outputs would "
                                     f"overwrite the first one's (rename it or align it separately)")
                stems[path.stem] = path
                photo = load(path)
                faces = align(photo, size=size, max_faces=max_faces)
                if not faces and not allow_none:
                    raise InputError(f"no face found in '{path}'")
                for k, face in enumerate(faces):
                    save_image(out / f"{path.stem}_face{k}.png", face.crop)
                write_json_atomic(out / f"{path.stem}.json", {
                    "source": str(path), "width": int(photo.shape[1]), "height": int(photo.shape[0]),
                    "size": size, "faces": [face.to_json() for face in faces],
                })
            except SmoothganError as exc:
                failures += 1
                err_console.print(Text.assemble(("error: ", "bold red"), " ".join(str(exc).split())))
                continue
            total_faces += len(faces)
            note = "no face" if not faces else f"{len(faces)} face(s)"
            console.print(Text(f"{path}: {note}"))  # Text: user paths are never read as Rich markup
    console.print(Text(f"wrote {total_faces} face(s) from {len(images) - failures} of {len(images)} photo(s) "
                       f"to {out}"))
    if failures:
        raise typer.Exit(InputError.exit_code)
