"""The PNG metadata every generated image carries, whichever engine made it (SPEC §3, issue 5 point 4).

The ``parameters`` text chunk follows AUTOMATIC1111's layout, which Civitai, Forge, ComfyUI's
image readers and most galleries parse: the prompt (LoRAs as ``<lora:name:strength>`` tags), then
one line of ``Key: value`` pairs. FLUX's distilled guidance goes under Forge's key ``Distilled CFG
Scale`` with ``CFG scale: 1``, as Forge writes it. ComfyUI's own ``prompt`` / ``workflow`` chunks
are kept when an image comes from ComfyUI, so dragging the file into ComfyUI reopens its workflow.
"""

from __future__ import annotations

import io
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


def add_chunks(png: bytes, text_chunks: dict[str, str]) -> bytes:
    """``png`` re-encoded with its existing text chunks (ComfyUI's prompt/workflow) plus ``text_chunks``."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        existing = {key: value for key, value in image.text.items() if isinstance(value, str)}
        return png_bytes(image, {**existing, **text_chunks})


def read_chunks(path: Path) -> dict[str, str]:
    """The text chunks of a PNG file (for tests and for the gallery's details)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return dict(image.text)
