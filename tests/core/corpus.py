"""A generated corpus of awkward photos, built with Pillow into a folder: what real users drop in."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw


def _face(size=(800, 600), color=(180, 120, 90)) -> Image.Image:
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size[0] // 4, size[1] // 8, size[0] * 3 // 4, size[1] * 7 // 8), fill=(235, 200, 170))
    draw.rectangle((0, 0, size[0] // 10, size[1] // 10), fill=(255, 0, 0))  # a marker in the top-left corner
    return image


def exif_rotated(path: Path) -> Path:
    """A landscape 800x600 JPEG whose EXIF says 'rotate 90° clockwise to view' (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _face().save(path, "JPEG", exif=exif.tobytes(), quality=90)
    return path


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A tiny file whose header claims side x side pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * (side // 8)
    raw = zlib.compress(row * 64)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
    path.write_bytes(png + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def build(folder: Path) -> dict[str, Path]:
    """Every awkward case, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["rotated"] = exif_rotated(folder / "rotated.jpg")
    _face().convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    files["cmyk"] = folder / "cmyk.jpg"
    grey16 = Image.linear_gradient("L").resize((600, 600)).convert("I").point(lambda v: v * 256)
    grey16.convert("I;16").save(folder / "grey16.png")
    files["grey16"] = folder / "grey16.png"
    palette = _face().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    files["palette"] = folder / "palette.png"
    rgba = _face().convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    files["rgba"] = folder / "rgba.png"
    frames = [_face(color=(i * 60, 0, 0)) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    files["gif"] = folder / "animated.gif"
    full = folder / "whole.jpg"
    _face((800, 600)).save(full, "JPEG", quality=92)
    data = full.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    full.unlink()
    files["truncated"] = folder / "truncated.jpg"
    (folder / "empty.jpg").write_bytes(b"")
    files["empty"] = folder / "empty.jpg"
    (folder / "notes.jpg").write_text("shopping list: eggs, milk")
    files["text"] = folder / "notes.jpg"
    files["bomb"] = bomb_png(folder / "bomb.png")
    _face(color=(10, 80, 160)).save(folder / "фото 1 ✨.jpg", "JPEG")
    files["unicode"] = folder / "фото 1 ✨.jpg"
    _face(color=(10, 160, 80)).save(folder / "  spaced  name .png")
    files["spaced"] = folder / "  spaced  name .png"
    _face(color=(200, 200, 40)).save(folder / "photo.webp", "WEBP")
    files["webp"] = folder / "photo.webp"
    _face(color=(90, 40, 200)).save(folder / "photo.bmp", "BMP")
    files["bmp"] = folder / "photo.bmp"
    tiff_frames = [_face(color=(40, 200, 200)), _face(color=(0, 0, 0))]
    tiff_frames[0].save(folder / "scan.tif", save_all=True, append_images=tiff_frames[1:])
    files["tiff"] = folder / "scan.tif"
    _face((120, 90)).save(folder / "tiny.jpg", "JPEG")
    files["tiny"] = folder / "tiny.jpg"
    return files
