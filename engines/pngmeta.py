"""The PNG metadata every generated image carries, whichever engine made it (SPEC §3, issue 5 point 4).

The ``parameters`` text chunk follows AUTOMATIC1111's layout, which Civitai, Forge, ComfyUI's
image readers and most galleries parse: the prompt (LoRAs as ``<lora:name:strength>`` tags), then
one line of ``Key: value`` pairs. FLUX's distilled guidance goes under Forge's key ``Distilled CFG
Scale`` with ``CFG scale: 1``, as Forge writes it. ComfyUI's own ``prompt`` / ``workflow`` chunks
are kept when an image comes from ComfyUI, so dragging the file into ComfyUI reopens its workflow.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

from engines.interface import GenerationRequest

SAMPLER_NAMES = {"euler": "Euler", "euler_ancestral": "Euler a", "dpmpp_2m": "DPM++ 2M", "heun": "Heun"}


def lora_label(path: str, name: str = "") -> str:
    """The name a LoRA goes by in a prompt tag: its file stem (what A1111 and ComfyUI look it up by)."""
    return Path(path).stem if path else name


def a1111_parameters(request: GenerationRequest, seed: int, engine: str, app_version: str,
                     distilled_guidance: bool = True) -> str:
    """The ``parameters`` text for one image of ``request`` made with ``seed``.

    ``distilled_guidance`` is FLUX's case (guidance is an input of the model, CFG is off); a classic
    checkpoint uses the guidance value as its CFG scale.
    """
    tags = " ".join(f"<lora:{lora_label(lora.path, lora.name)}:{lora.strength:g}>" for lora in request.loras)
    prompt = f"{request.prompt} {tags}".strip()
    pairs: list[tuple[str, Any]] = [
        ("Steps", request.steps),
        ("Sampler", SAMPLER_NAMES.get(request.sampler, request.sampler)),
        ("Schedule type", request.scheduler.capitalize()),
        *((("CFG scale", 1), ("Distilled CFG Scale", f"{request.guidance:g}")) if distilled_guidance
          else (("CFG scale", f"{request.guidance:g}"),)),
        ("Seed", seed),
        ("Size", f"{request.width}x{request.height}"),
        ("Model", request.base_model_name),
    ]
    if request.loras:
        strengths = ", ".join(f"{lora_label(lora.path, lora.name)}: {lora.strength:g}" for lora in request.loras)
        pairs.append(("Lora weights", f'"{strengths}"'))
    for toggle in sorted(request.advanced):
        pairs.append((f"Isengard {toggle}", "on"))
    pairs.append(("Engine", engine))
    pairs.append(("Version", f"Isengard Desktop {app_version}"))
    return prompt + "\n" + ", ".join(f"{key}: {value}" for key, value in pairs)


def png_bytes(image: Any, text_chunks: dict[str, str]) -> bytes:
    """``image`` (a PIL image) encoded as PNG with ``text_chunks`` as tEXt/iTXt chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text_chunks.items():
        info.add_itxt(key, value) if not value.isascii() else info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _text_chunk(key: str, value: str) -> bytes:
    """A tEXt chunk (Latin-1 text), or an uncompressed iTXt chunk (UTF-8) for text Latin-1 cannot hold."""
    if value.isascii():
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def _keyword(kind: bytes, data: bytes) -> str | None:
    return data.split(b"\0", 1)[0].decode("latin-1") if kind in (b"tEXt", b"iTXt", b"zTXt") else None


def add_chunks(png: bytes, text_chunks: dict[str, str]) -> bytes:
    """``png`` with ``text_chunks`` added as text chunks before its image data (where readers that stop at the
    pixels still find them), replacing chunks of the same keys; every other chunk, ComfyUI's prompt and workflow
    among them, and the pixels stay byte for byte (no decoding and re-encoding: a 1024 px image costs nothing)."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG image")
    out, position, inserted = [PNG_SIGNATURE], len(PNG_SIGNATURE), False
    while position + 12 <= len(png):
        (length,) = struct.unpack(">I", png[position:position + 4])
        kind = png[position + 4:position + 8]
        end = position + 12 + length
        if end > len(png):
            raise ValueError("a truncated PNG image")
        if kind in (b"IDAT", b"IEND") and not inserted:
            out.extend(_text_chunk(key, value) for key, value in text_chunks.items())
            inserted = True
        if _keyword(kind, png[position + 8:position + 8 + length]) not in text_chunks:
            out.append(png[position:end])
        position = end
        if kind == b"IEND":
            break
    if not inserted:
        raise ValueError("a PNG image without image data")
    return b"".join(out)


def read_chunks(path: Path) -> dict[str, str]:
    """The text chunks of a PNG file (for tests and for the gallery's details)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return dict(image.text)
