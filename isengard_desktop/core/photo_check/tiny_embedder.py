"""A tiny random-weight face embedder for fast-test, built locally as an ONNX file with SFace's interface.

SFace (the production embedder) is an ONNX graph with input ``data`` [1, 3, 112, 112] and output ``fc1``
[1, 128], run by OpenCV's ``cv2.FaceRecognizerSF``. This file writes a graph with the same input and output
(Conv 8x8/8 -> Relu -> GlobalAveragePool -> Flatten -> Gemm to 128) and seeded random weights, so fast-test
runs the same loading and embedding code on an 11 kB model. The ONNX protobuf is written by hand (about forty
lines of wire format) rather than through the ``onnx`` package: fast-test is a product mode, and a 17 MB
dependency to write one small file is not worth it. Building it twice gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from isengard_desktop.base import atomic

if TYPE_CHECKING:
    import numpy as np

TINY_EMBEDDER_ID = "tiny-sface"
TINY_FILE = "tiny-sface/tiny_sface.onnx"
EMBEDDING_SIZE = 128
_CHANNELS = 8
_FLOAT, _INT, _INTS = 1, 2, 7  # TensorProto.FLOAT, AttributeProto.INT / INTS


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 values are written as ten-byte two's complement
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _key(field, 2) + _varint(len(raw)) + raw


def _tensor(name: str, array: np.ndarray) -> bytes:
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, _FLOAT) + _bytes(8, name) + _bytes(9, array.astype("<f4").tobytes())


def _value_info(name: str, shape: tuple[int, ...]) -> bytes:
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, _FLOAT) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _attr_int(name: str, value: int) -> bytes:
    return _bytes(1, name) + _int(3, value) + _int(20, _INT)


def _attr_ints(name: str, values: list[int]) -> bytes:
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, _INTS)


def _node(op: str, inputs: list[str], outputs: list[str], attrs: list[bytes] = ()) -> bytes:
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    return body + _bytes(4, op) + b"".join(_bytes(5, a) for a in attrs)


def model_bytes(seed: int = 0) -> bytes:
    """The tiny embedder's ONNX ModelProto (IR 7, opset 11)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    conv_w = rng.normal(0, 0.05, (_CHANNELS, 3, 8, 8))
    conv_b = rng.normal(0, 0.05, (_CHANNELS,))
    fc_w = rng.normal(0, 0.5, (EMBEDDING_SIZE, _CHANNELS))
    fc_b = rng.normal(0, 0.5, (EMBEDDING_SIZE,))
    nodes = [
        _node("Conv", ["data", "conv_w", "conv_b"], ["conv"], [_attr_ints("kernel_shape", [8, 8]),
                                                             _attr_ints("strides", [8, 8])]),
        _node("Relu", ["conv"], ["relu"]),
        _node("GlobalAveragePool", ["relu"], ["pool"]),
        _node("Flatten", ["pool"], ["flat"], [_attr_int("axis", 1)]),
        _node("Gemm", ["flat", "fc_w", "fc_b"], ["fc1"], [_attr_int("transB", 1)]),
    ]
    graph = (b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "tiny_sface")
             + _bytes(5, _tensor("conv_w", conv_w)) + _bytes(5, _tensor("conv_b", conv_b))
             + _bytes(5, _tensor("fc_w", fc_w)) + _bytes(5, _tensor("fc_b", fc_b))
             + _bytes(11, _value_info("data", (1, 3, 112, 112)))
             + _bytes(12, _value_info("fc1", (1, EMBEDDING_SIZE))))
    opset = _bytes(1, "") + _int(2, 11)
    return _int(1, 7) + _bytes(2, "isengard") + _bytes(7, graph) + _bytes(8, opset)


def ensure_tiny_embedder(models_dir: Path) -> Path:
    """The tiny embedder under the volume's models folder, written (atomically) when absent."""
    path = models_dir / TINY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, model_bytes())
    return path

