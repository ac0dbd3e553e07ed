"""Read one photo from outside: check it, store a copy and a thumbnail in the volume, describe it.

Runs in importer worker processes (so both cores decode), imports nothing but Pillow, and never
raises for a bad file: it returns a ``refused`` reason that names what is wrong in plain words.
The original file is only ever read.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from isengard_desktop.storage import atomic

THUMBNAIL_SIDE = 256
MAX_PIXELS = 100_000_000  # 100 megapixels: larger than any camera, smaller than a decompression bomb
MAX_FILE_BYTES = 300 * 1024 * 1024
SUPPORTED = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
SUPPORTED_TEXT = "JPEG, PNG, WebP, BMP, TIFF"

try:  # HEIC/HEIF photos (iPhones) through pillow-heif, when it is installed.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    SUPPORTED["HEIF"] = ".heic"
    SUPPORTED_TEXT += ", HEIC"
except ImportError:  # pragma: no cover - depends on the installation
    pass

# We check the pixel count ourselves (with a clearer message); Pillow's own check would warn or raise first.
Image.MAX_IMAGE_PIXELS = None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode (CMYK, 16-bit, palette with transparency, LA, ...) as 8-bit RGB, alpha over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    elif image.mode == "F":
        image = image.point(lambda value: value * 255).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB") if image.mode != "RGB" else image


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation tag (1-8) to pixels, as a camera viewer would."""
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def _refuse(reason: str) -> dict[str, Any]:
    return {"refused": reason}


def probe(source: str, images_dir: str, thumbnails_dir: str) -> dict[str, Any]:
    """Check ``source`` and store it. Returns image facts, or ``{"refused": reason}``."""
    path = Path(source)
    try:
        size = path.stat().st_size
        if size == 0:
            return _refuse("the file is empty (0 bytes)")
        if size > MAX_FILE_BYTES:
            return _refuse(f"the file is {size // (1024 * 1024)} MB; photos over {MAX_FILE_BYTES // (1024 * 1024)} MB are not accepted")
        data = path.read_bytes()
    except PermissionError:
        return _refuse("the file cannot be read (permission denied)")
    except OSError as exc:
        return _refuse(f"the file cannot be read ({exc.strerror or exc})")
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd-but-readable metadata; what matters is the decode.
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "?"
            if fmt == "GIF":
                return _refuse("GIF is not a photo format Isengard trains on; save it as PNG or JPEG")
            if fmt not in SUPPORTED:
                return _refuse(f"{fmt} images are not supported; use {SUPPORTED_TEXT}")
            width, height = image.size
            if width * height > MAX_PIXELS:
                return _refuse(
                    f"the image is too large ({width}×{height}, {width * height / 1e6:.0f} megapixels; "
                    f"the limit is {MAX_PIXELS // 1_000_000})"
                )
            orientation = int(image.getexif().get(0x0112, 1) or 1)
            # Decode at a reduced scale where the format allows it (JPEG): every byte is still read,
            # so a truncated file is still caught, at a fraction of the cost of a full decode.
            image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))
            image.load()
            thumb = to_rgb(image)
            thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
            thumb = upright(thumb, orientation)
    except UnidentifiedImageError:
        return _refuse(f"this is not an image Isengard can read (supported: {SUPPORTED_TEXT})")
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "broken data" in text or "premature end" in text.lower():
            return _refuse("the image is damaged or incomplete (the file ends too early)")
        return _refuse(f"the image is damaged and cannot be decoded ({text})")
    except (ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
        return _refuse(f"the image is damaged and cannot be decoded ({exc})")
    if orientation in (5, 6, 7, 8):  # EXIF rotations by 90°: the upright picture is the other way round
        width, height = height, width
    ext = SUPPORTED[fmt]
    rel_path = f"images/{sha256[:2]}/{sha256}{ext}"
    stored = Path(images_dir).parent / rel_path
    thumb_path = Path(thumbnails_dir) / sha256[:2] / f"{sha256}.jpg"
    try:
        if not stored.exists():
            atomic.write_bytes(stored, data)
        if not thumb_path.exists():
            buffer = io.BytesIO()
            thumb.save(buffer, "JPEG", quality=85)
            atomic.write_bytes(thumb_path, buffer.getvalue())
    except OSError as exc:
        return _refuse(f"it could not be stored in the volume ({exc.strerror or exc}); check free disk space")
    return {
        "sha256": sha256,
        "rel_path": rel_path,
        "format": "JPEG" if fmt == "MPO" else fmt,
        "width": width,
        "height": height,
        "orientation": orientation,
        "file_size": size,
        "source_name": os.path.basename(source),
    }


def make_thumbnail(stored: Path, thumb_path: Path) -> None:
    """(Re)make a cached thumbnail from a stored image, e.g. after the cache folder was cleared."""
    with Image.open(stored) as image:
        image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))
        orientation = int(image.getexif().get(0x0112, 1) or 1)
        thumb = upright(to_rgb(image), orientation)
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=85)
    atomic.write_bytes(thumb_path, buffer.getvalue())
