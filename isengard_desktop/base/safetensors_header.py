"""A safetensors file's header (tensor names, shapes and ``__metadata__``), read and rewritten without torch.

The format: 8 bytes little-endian header length, the header as JSON, then the tensor data (offsets in the header
are relative to the data, so the header can be rewritten and the data copied as it is). The memory plan counts
parameters from it, the ComfyUI engine reads a LoRA's keys and metadata, AI-Toolkit's LoRA gets the app's metadata.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

MAX_HEADER = 64 * 1024 * 1024  # a header larger than this is not a LoRA or model file worth reading


def _parse(length_bytes: bytes, read) -> dict[str, Any]:
    if len(length_bytes) != 8:
        raise ValueError("not a safetensors file: shorter than its header length")
    (length,) = struct.unpack("<Q", length_bytes)
    if length > MAX_HEADER:
        raise ValueError(f"not a safetensors file: a header of {length} bytes")
    header = json.loads(read(length))
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file: the header is not a JSON object")
    return header


def read_header(path: Path) -> dict[str, Any]:
    """The header of the file at ``path``; OSError when it cannot be read, ValueError when it is not safetensors."""
    with open(path, "rb") as handle:
        return _parse(handle.read(8), handle.read)


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, tensor data) of a whole file's bytes."""
    header = _parse(data[:8], lambda n: data[8 : 8 + n])
    (length,) = struct.unpack("<Q", data[:8])
    return header, data[8 + length :]


def join(header: dict[str, Any], tensors: bytes) -> bytes:
    """A file's bytes from a header and the tensor data it describes."""
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the format keeps the data 8-byte aligned
    return struct.pack("<Q", len(encoded)) + encoded + tensors
