"""Real photographs for the photo-check tests: scikit-image ships a few in its wheel (skimage.data), the astronaut
portrait (Eileen Collins, NASA, public domain) among them. The variants a person's dataset really has are derived
from it: blurred, resized, re-encoded, cropped, too dark, a two-person composite and a face too small."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

# Photos with no human face in them (a cat, a cup, a rocket, coins, the moon).
NO_FACE = ("chelsea", "coffee", "rocket", "coins", "moon")


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def make(folder: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write the photos (JPEG, quality 95 unless said) into ``folder``; returns name -> path."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    face = astronaut()
    two = Image.new("RGB", (1024, 512))
    two.paste(face, (0, 0))
    two.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    small = Image.new("RGB", (1400, 1400), (128, 128, 128))
    small.paste(face, (450, 450))
    photos = {
        "astronaut": (face, 95),
        "resized": (face.resize((1024, 1024), Image.Resampling.LANCZOS), 95),
        "reencoded": (face, 30),
        "cropped": (face.crop((25, 25, 487, 487)), 95),
        "blurred": (face.filter(ImageFilter.GaussianBlur(2)), 95),
        "soft": (face.filter(ImageFilter.GaussianBlur(1)), 95),
        "dark": (ImageEnhance.Brightness(face).enhance(0.25), 95),
        "two_people": (two, 95),
        "small_face": (small, 95),
        **{name: (Image.fromarray(getattr(data, name)()).convert("RGB"), 95) for name in NO_FACE},
    }
    out = {}
    for name, (image, quality) in photos.items():
        if names is not None and name not in names:
            continue
        path = folder / f"{name}.jpg"
        image.save(path, quality=quality)
        out[name] = path
    return out
