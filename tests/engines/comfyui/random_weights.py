"""Random values for every tensor of a module, for the test fixtures built with ComfyUI's model classes.

ComfyUI builds its layers without initialising them (``comfy.ops.disable_weight_init``): their tensors hold
whatever memory held, NaN included. Fixtures draw their own values instead: a seeded normal draw for
matrices and convolutions, ones for norm scales, zeros for other vectors.
"""

from __future__ import annotations


def random_state(module, dtype, scale: float = 0.02, seed: int = 0) -> dict:
    import torch

    out = {}
    generator = torch.Generator().manual_seed(seed)
    for key, value in module.state_dict().items():
        if value.dim() <= 1:
            is_scale = key.endswith(".scale") or ("norm" in key and key.endswith(".weight"))
            tensor = torch.ones(value.shape) if is_scale else torch.zeros(value.shape)
        else:
            tensor = torch.randn(value.shape, generator=generator) * scale
        out[key] = tensor.to(dtype).contiguous()
    return out
