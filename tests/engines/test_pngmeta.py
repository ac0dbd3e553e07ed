"""The ``parameters`` chunk goes into ComfyUI's PNGs without touching their pixels or ComfyUI's own chunks."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engines import pngmeta


def comfyui_png() -> bytes:
    """A PNG as ComfyUI's SaveImage writes it: its prompt and workflow as text chunks before the pixels."""
    image = Image.new("RGB", (48, 32), (10, 200, 30))
    image.putpixel((5, 7), (255, 0, 0))
    info = PngInfo()
    info.add_text("prompt", '{"3": {"class_type": "KSampler"}}')
    info.add_text("workflow", '{"nodes": []}')
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_parameters_join_comfyuis_chunks_and_the_pixels_stay_the_same():
    original = comfyui_png()
    out = pngmeta.add_chunks(original, {"parameters": "a photo of ohwx_ada — à la plage"})
    with Image.open(io.BytesIO(out)) as image:
        # Readers that stop before the pixels (image.info before load) already see every chunk.
        assert image.info["parameters"] == "a photo of ohwx_ada — à la plage"
        assert image.info["prompt"] == '{"3": {"class_type": "KSampler"}}'
        assert image.info["workflow"] == '{"nodes": []}'
        assert image.getpixel((5, 7)) == (255, 0, 0)
        assert image.getpixel((6, 7)) == (10, 200, 30)
    # Not decoded and encoded again: the image data is the original's, byte for byte.
    idat = original.index(b"IDAT") - 4
    assert original[idat:] in out


def test_a_key_given_again_replaces_the_old_chunk():
    once = pngmeta.add_chunks(comfyui_png(), {"parameters": "first"})
    twice = pngmeta.add_chunks(once, {"parameters": "second"})
    with Image.open(io.BytesIO(twice)) as image:
        assert image.info["parameters"] == "second"
    assert twice.count(b"parameters") == 1


@pytest.mark.parametrize("data", [b"GIF89a not a png", comfyui_png()[:60]])
def test_what_is_not_a_whole_png_is_refused(data):
    with pytest.raises(ValueError):
        pngmeta.add_chunks(data, {"parameters": "x"})
