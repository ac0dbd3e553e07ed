"""Read one photo from outside: check it, store a copy and a thumbnail in the volume, describe it.

Runs in importer worker processes (so both cores decode), imports nothing but Pillow, and never
raises for a bad file: it returns a ``refused`` reason that names what is wrong in plain words.
The original file is only ever read.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from isengard_desktop.base import atomic

THUMBNAIL_SIDE = 256
MAX_PIXELS = 100_000_000  # 100 megapixels: larger than any camera, smaller than a decompression bomb
# What is decoded at full size (every format but JPEG, which decodes at 1/8): 50 MP holds a 48 MP phone
# photo and costs at most 200 MB (4 bytes a pixel) per import worker, whatever size a file declares.
MAX_DECODE_PIXELS = 50_000_000
MAX_FILE_BYTES = 300 * 1024 * 1024
CHUNK = 1024 * 1024  # files are hashed and copied in chunks: a 300 MB file costs 1 MB of memory
STRIP_PIXELS = 1_000_000  # pixels converted at a time when making the thumbnail
NOT_REGULAR = "this is not a regular file (a named pipe, device or socket); only photo files can be imported"
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


def reduced_rgb(image: Image.Image, side: int) -> Image.Image:
    """A loaded image as RGB, reduced by a whole factor to no less than ``side`` on its long side.

    Converted strip by strip so that the only full-size picture in memory is the decoded one: the alpha
    handling and mode conversions of ``to_rgb`` work on about a megapixel at a time (a whole 100 MP RGBA
    picture needed four more full-size copies, 1.6 GB).
    """
    width, height = image.size
    factor = max(1, max(width, height) // side)
    if width * height <= STRIP_PIXELS:  # a JPEG decoded at reduced scale lands here: no strips, no copy
        rgb = to_rgb(image)
        return rgb.reduce(factor) if factor > 1 else rgb
    rows = max(factor, (STRIP_PIXELS // max(width, 1)) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = to_rgb(image.crop((0, top, width, min(height, top + rows))))
        if factor > 1:
            strip = strip.reduce(factor)
        out.paste(strip, (0, top // factor))
    return out


def _thumbnail(image: Image.Image, orientation: int) -> Image.Image:
    thumb = reduced_rgb(image, THUMBNAIL_SIDE * 2)
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    return upright(thumb, orientation)


def _open_regular(source: str) -> tuple[Any, int] | dict[str, Any]:
    """The file opened for reading with its size, or a refusal (not a regular file, empty, too big, unreadable).

    Opened without blocking and checked on the open descriptor: a named pipe would otherwise block the
    import forever, and a path swapped between a check and the open is caught.
    """
    try:
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except PermissionError:
        return _refuse("the file cannot be read (permission denied)")
    except OSError as exc:
        return _refuse(f"the file cannot be read ({exc.strerror or exc})")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return _refuse(NOT_REGULAR)
    if info.st_size == 0:
        os.close(fd)
        return _refuse("the file is empty (0 bytes)")
    if info.st_size > MAX_FILE_BYTES:
        os.close(fd)
        return _refuse(f"the file is {info.st_size // (1024 * 1024)} MB; photos over "
                       f"{MAX_FILE_BYTES // (1024 * 1024)} MB are not accepted")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size


def _sha256(handle: Any) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _store(handle: Any, target: Path, sha256: str) -> bool:
    """Copy the open source to ``target`` atomically, hashing again; False if the bytes changed meanwhile."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            handle.seek(0)
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            Path(tmp).unlink(missing_ok=True)
            return False
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic.fsync_dir(target.parent)
    return True


def probe(source: str, images_dir: str, thumbnails_dir: str) -> dict[str, Any]:
    """Check ``source`` and store it. Returns image facts, or ``{"refused": reason}``.

    Memory stays bounded whatever the file declares: the file is hashed and copied in 1 MiB chunks, and
    the picture is decoded only if its decoded size is within ``MAX_DECODE_PIXELS`` (JPEG decodes at 1/8
    scale and so only meets ``MAX_PIXELS``).
    """
    opened = _open_regular(source)
    if isinstance(opened, dict):
        return opened
    handle, size = opened
    with handle:
        try:
            sha256 = _sha256(handle)
        except OSError as exc:
            return _refuse(f"the file cannot be read ({exc.strerror or exc})")
        handle.seek(0)
        described = _decode(handle)
        if "refused" in described:
            return described
        thumb = described.pop("thumbnail")
        ext = SUPPORTED[described["format"]]
        rel_path = f"images/{sha256[:2]}/{sha256}{ext}"
        stored = Path(images_dir).parent / rel_path
        thumb_path = Path(thumbnails_dir) / sha256[:2] / f"{sha256}.jpg"
        try:
            if not stored.exists() and not _store(handle, stored, sha256):
                return _refuse("the file changed while it was being imported; import it again once it is saved")
            if not thumb_path.exists():
                buffer = io.BytesIO()
                thumb.save(buffer, "JPEG", quality=85)
                atomic.write_bytes(thumb_path, buffer.getvalue())
        except OSError as exc:
            return _refuse(f"it could not be stored in the volume ({exc.strerror or exc}); check free disk space")
    return {
        **described,
        "sha256": sha256,
        "rel_path": rel_path,
        "format": "JPEG" if described["format"] == "MPO" else described["format"],
        "file_size": size,
        "source_name": os.path.basename(source),
    }


def _kind(image: Image.Image, advice: bool = False) -> str:
    if advice:
        return "baseline (not progressive) JPEG" if image.format in ("JPEG", "MPO") else "JPEG"
    return "progressive JPEG" if image.format in ("JPEG", "MPO") else f"{image.format} file"


def _decode(handle: Any) -> dict[str, Any]:
    """Size, orientation and thumbnail of the open image file, or a refusal naming what is wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd-but-readable metadata; what matters is the decode.
            with Image.open(handle) as image:
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
                # Decode at a reduced scale where the format allows it (JPEG): every byte is still read,
                # so a truncated file is still caught, at a fraction of the cost of a full decode.
                image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))
                decoded = image.size[0] * image.size[1]
                if image.info.get("progressive") or image.info.get("progression"):
                    # libjpeg keeps every coefficient of a progressive JPEG, reduced scale or not (318 MB
                    # for 100 MP): it costs what a full decode costs.
                    decoded = width * height
                if decoded > MAX_DECODE_PIXELS:
                    return _refuse(
                        f"the image is {width}×{height} ({decoded / 1e6:.0f} megapixels); a {_kind(image)} is read "
                        f"at full size, and over {MAX_DECODE_PIXELS // 1_000_000} megapixels it would take more memory "
                        f"than an import may use: save it as a {_kind(image, advice=True)} or scale it down"
                    )
                # Only now: a PNG's EXIF may follow its pixels, so reading it decodes the whole picture.
                orientation = int(image.getexif().get(0x0112, 1) or 1)
                image.load()
                thumb = _thumbnail(image, orientation)
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
    return {"format": fmt, "width": width, "height": height, "orientation": orientation, "thumbnail": thumb}


def make_thumbnail(stored: Path, thumb_path: Path) -> None:
    """(Re)make a cached thumbnail from a stored image, e.g. after the cache folder was cleared."""
    with Image.open(stored) as image:
        image.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))
        orientation = int(image.getexif().get(0x0112, 1) or 1)
        image.load()
        thumb = _thumbnail(image, orientation)
        buffer = io.BytesIO()
        thumb.save(buffer, "JPEG", quality=85)
    atomic.write_bytes(thumb_path, buffer.getvalue())
