"""The one safetensors header reader (base/safetensors_header.py), checked against the safetensors library itself."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from isengard_desktop.base import safetensors_header
from isengard_desktop.base.memory_plan import ModelSizes


def test_a_rewritten_header_keeps_every_tensor_and_adds_the_metadata(tmp_path) -> None:
    source, target = tmp_path / "lora.safetensors", tmp_path / "with_metadata.safetensors"
    tensors = {"a.lora_down": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones((5,), dtype=np.float16)}
    save_file(tensors, str(source), metadata={"ss_network_dim": "4"})

    header = safetensors_header.read_header(source)
    assert header["a.lora_down"]["shape"] == [3, 4] and header["__metadata__"] == {"ss_network_dim": "4"}

    header, data = safetensors_header.split(source.read_bytes())
    header["__metadata__"]["isengard.base_model"] = "FLUX.1-dev"
    target.write_bytes(safetensors_header.join(header, data))

    loaded = load_file(str(target))  # the library accepts the file and reads the same tensors
    assert set(loaded) == set(tensors) and all(np.array_equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(str(target), "np") as handle:
        assert handle.metadata() == {"ss_network_dim": "4", "isengard.base_model": "FLUX.1-dev"}


def test_the_memory_plan_counts_parameters_from_the_headers(tmp_path) -> None:
    for part, shape in (("transformer", (10, 20)), ("text_encoder_2", (7,)), ("text_encoder", (3, 3)), ("vae", (2,))):
        (tmp_path / part).mkdir()
        save_file({"w": np.zeros(shape, dtype=np.float16)}, str(tmp_path / part / "model.safetensors"))
    assert ModelSizes.from_folder(tmp_path) == ModelSizes(200, 7, 9, 2)


def test_a_file_that_is_not_safetensors_is_refused(tmp_path) -> None:
    path = tmp_path / "photo.safetensors"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)  # a JPEG's start: an absurd header length
    with pytest.raises(ValueError):
        safetensors_header.read_header(path)
    path.write_bytes(b"abc")
    with pytest.raises(ValueError):
        safetensors_header.read_header(path)
