"""An InstantX-FLUX-IP-Adapter-shaped file and a SigLIP-shaped image encoder folder, random, for the tests.

The ComfyUI-IPAdapter-Flux pack fixes the adapter's shape whatever the model: an image projection
1152 -> 2304 -> 128 tokens x 4096 and 57 attention processors (19 double + 38 single blocks, 3072 wide),
loaded with ``strict=True`` from a ``torch.load``-ed ``{"image_proj": ..., "ip_adapter": ...}``: 2.6 billion
numbers, 5.3 GB as the real ``ip-adapter.bin``. Here each matrix is a window over one short random vector
(``as_strided`` with strides (1, 1), a Hankel matrix), and ``torch.save`` stores only that vector: the file
is a few MB, and the pack still builds its full-size fp16 layers from it (about 5 GB of RAM while ComfyUI
holds it). The image encoder is read through ``SiglipVisionModel.from_pretrained``, which takes its
configuration from the folder: it keeps SigLIP-so400m's width (1152, the projection's input) with one
layer and 28 px pictures (four patches), under the folder name the pack asks for.
"""

from __future__ import annotations

from pathlib import Path

VERSION = 1  # part of the cache folder's name: bump when the build changes
ADAPTER = "ip-adapter.bin"
SIGLIP = "siglip-so400m-patch14-384"
TOKENS, WIDTH, CONTEXT, IMAGE_WIDTH, BLOCKS = 128, 3072, 4096, 1152, 19 + 38


def ensure_ipadapter_shaped(cache: Path) -> tuple[Path, Path]:
    """The adapter file and the SigLIP folder under ``cache`` (built once, a few seconds)."""
    folder = cache / f"ipadapter-shaped-v{VERSION}"
    if not (folder / ADAPTER).is_file():
        staging = cache / f"{folder.name}.partial"
        staging.mkdir(parents=True, exist_ok=True)
        _build(staging)
        staging.rename(folder)
    return folder / ADAPTER, folder / SIGLIP


def _hankel(rows: int, cols: int, generator, scale: float = 0.02):
    import torch

    vector = (torch.randn(rows + cols - 1, generator=generator) * scale).to(torch.float16)
    return vector.as_strided((rows, cols), (1, 1))


def _build(folder: Path) -> None:
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    generator = torch.Generator().manual_seed(11)
    image_proj = {
        "proj.0.weight": _hankel(2 * IMAGE_WIDTH, IMAGE_WIDTH, generator),
        "proj.0.bias": torch.zeros(2 * IMAGE_WIDTH, dtype=torch.float16),
        "proj.2.weight": _hankel(CONTEXT * TOKENS, 2 * IMAGE_WIDTH, generator),
        "proj.2.bias": torch.zeros(CONTEXT * TOKENS, dtype=torch.float16),
        "norm.weight": torch.ones(CONTEXT, dtype=torch.float16),
        "norm.bias": torch.zeros(CONTEXT, dtype=torch.float16),
    }
    ip_adapter = {}
    for block in range(BLOCKS):
        for name in ("to_k_ip", "to_v_ip"):
            ip_adapter[f"{block}.{name}.weight"] = _hankel(WIDTH, CONTEXT, generator)
    torch.save({"image_proj": image_proj, "ip_adapter": ip_adapter}, folder / ADAPTER)

    torch.manual_seed(12)
    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=IMAGE_WIDTH, intermediate_size=64,
                                                   num_hidden_layers=1, num_attention_heads=16, image_size=28,
                                                   patch_size=14))
    encoder.save_pretrained(folder / SIGLIP)
    SiglipImageProcessor(size={"height": 28, "width": 28}).save_pretrained(folder / SIGLIP)
