"""Issue 11 item 4: an import's memory stays bounded whatever size a file declares.

Each import runs in a fresh interpreter and reports its own peak resident memory (VmHWM), so the
figure is the import's and not the test runner's.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from isengard_desktop.base.image_probe import MAX_DECODE_PIXELS, THUMBNAIL_SIDE, probe, to_rgb

ROOT = Path(__file__).resolve().parents[2]
PEAK_LIMIT_MB = 200  # the interpreter, Pillow and one bounded decode; the unbounded import took 1,565 MB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def declared_png(path: Path, width: int, height: int) -> Path:
    """A valid RGBA PNG of ``width`` x ``height`` that is a few hundred KB on disk (one flat colour)."""
    compressor = zlib.compressobj(9)
    row = b"\0" + bytes([200, 120, 80, 255]) * width
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def probe_in_fresh_process(source: Path, volume: Path) -> tuple[dict, float]:
    # VmHWM, not ru_maxrss: Linux carries the parent's peak (the test runner's, torch loaded) into ru_maxrss
    # across fork and exec, while VmHWM belongs to the new program's own memory.
    code = (
        "import json, sys\n"
        "from isengard_desktop.base.image_probe import probe\n"
        "result = probe(sys.argv[1], sys.argv[2] + '/images', sys.argv[2] + '/cache/thumbnails')\n"
        "peak = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "print(json.dumps({'result': result, 'peak_mb': peak / 1024}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(source), str(volume)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    answer = json.loads(done.stdout)
    return answer["result"], answer["peak_mb"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_a_small_png_declaring_100_megapixels_is_refused_without_decoding_it(tmp_path: Path) -> None:
    source = declared_png(tmp_path / "huge.png", 10_000, 10_000)
    assert source.stat().st_size < 1_000_000
    result, peak_mb = probe_in_fresh_process(source, tmp_path / "vol")
    assert "10000×10000" in result["refused"] and "50 megapixels" in result["refused"]
    assert "JPEG" in result["refused"], "the refusal says what to do"
    assert peak_mb < PEAK_LIMIT_MB, f"peak {peak_mb:.0f} MB"
    assert not (tmp_path / "vol" / "images").exists() or not list((tmp_path / "vol" / "images").rglob("*.png"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_a_large_rgba_png_within_the_limit_costs_one_decoded_copy(tmp_path: Path) -> None:
    # 24 MP RGBA: 96 MB decoded. Converting it whole (alpha over white, then RGB) cost four more copies.
    source = declared_png(tmp_path / "big.png", 6000, 4000)
    result, peak_mb = probe_in_fresh_process(source, tmp_path / "vol")
    assert (result["width"], result["height"]) == (6000, 4000)
    assert peak_mb < 96 + 100, f"peak {peak_mb:.0f} MB"


def test_a_progressive_jpeg_over_the_limit_is_refused(tmp_path: Path) -> None:
    # libjpeg keeps every coefficient of a progressive JPEG: 318 MB for 100 MP even at 1/8 scale.
    side = int(MAX_DECODE_PIXELS**0.5) + 16
    source = tmp_path / "progressive.jpg"
    Image.new("RGB", (side, side), (90, 120, 150)).save(source, quality=80, progressive=True)
    result = probe(str(source), str(tmp_path / "vol" / "images"), str(tmp_path / "vol" / "thumbs"))
    assert "progressive JPEG" in result["refused"] and "baseline" in result["refused"]
    baseline = tmp_path / "baseline.jpg"
    Image.new("RGB", (side, side), (90, 120, 150)).save(baseline, quality=80)
    assert "refused" not in probe(str(baseline), str(tmp_path / "vol" / "images"), str(tmp_path / "vol" / "thumbs"))


def test_the_strip_by_strip_thumbnail_matches_a_whole_picture_conversion(tmp_path: Path) -> None:
    """Half-transparent shapes over a transparent background, composited over white as before."""
    image = Image.new("RGBA", (2400, 1700), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((200, 100, 1500, 1600), fill=(200, 30, 30, 255))
    draw.rectangle((1200, 300, 2300, 1200), fill=(20, 40, 220, 128))
    source = tmp_path / "shapes.png"
    image.save(source)
    result = probe(str(source), str(tmp_path / "vol" / "images"), str(tmp_path / "vol" / "cache" / "thumbnails"))
    thumb_path = tmp_path / "vol" / "cache" / "thumbnails" / result["sha256"][:2] / f"{result['sha256']}.jpg"
    reference = to_rgb(image)
    reference.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    with Image.open(thumb_path) as thumb:
        assert thumb.size == reference.size
        assert thumb.getpixel((5, 5)) >= (250, 250, 250), "transparent corners are white"
        worst = max(high for _low, high in ImageChops.difference(thumb.convert("RGB"), reference).getextrema())
    assert worst < 60, "only resampling and JPEG differences (edges), no fringe or shifted strip"
