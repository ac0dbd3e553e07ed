"""Checkpoints: everything needed to continue a run exactly where it stopped.

``output_dir/checkpoints/step_{N:06d}/`` holds ``lora.safetensors`` (the adapter, unscaled),
``optimizer.pt`` (the optimizer's state dict: plain tensors and numbers only, so it loads with
``torch.load(weights_only=True)`` and no pickled code ever runs) and ``state.json`` (the step, every
random generator's state and the data order's position). A checkpoint folder is filled under a
temporary name and renamed whole, so a folder named ``step_*`` is always complete; only the newest
``KEEP`` are kept.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from safetensors.torch import load_file, save

from engines.diffusers.errors import TrainingError
from isengard_desktop.base import atomic

log = structlog.get_logger(__name__)

KEEP = 2  # a FLUX.1-dev rank-16 checkpoint is ~0.8 GB (LoRA + two Adam moments)
NAME = re.compile(r"^step_(\d{6,})$")
FORMAT = 1


@dataclass
class Checkpoint:
    step: int
    lora: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: dict[str, Any]


def folder_name(step: int) -> str:
    return f"step_{step:06d}"


def save_checkpoint(
    root: Path, step: int, lora: dict[str, torch.Tensor], optimizer: dict[str, Any], extra: dict[str, Any]
) -> Path:
    """Publish the checkpoint of ``step`` under ``root`` and prune old ones; returns its folder."""
    started = time.perf_counter()
    target = root / folder_name(step)
    if target.is_dir():
        # A run is deterministic, so the same step always has the same content: resuming and stopping
        # again before the next step finds its own checkpoint already there.
        return target
    staging = atomic.staging_dir(root, target.name)
    (staging / "lora.safetensors").write_bytes(save(lora))
    # Serialised here, written by Python: torch's own file writer reports a full disk as "unexpected pos 64 vs 0",
    # which no one can act on; Python's write says ENOSPC, which the worker turns into "free some space".
    buffer = io.BytesIO()
    torch.save(optimizer, buffer)
    (staging / "optimizer.pt").write_bytes(buffer.getbuffer())
    state = {"format": FORMAT, "step": step, "rng": rng_state(), **extra}
    (staging / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    atomic.publish_dir(staging, target)
    _prune(root)
    log.info("checkpoint_saved", step=step, path=str(target), seconds=round(time.perf_counter() - started, 3))
    return target


def latest_checkpoint(root: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := NAME.match(p.name)) and (p / "state.json").is_file()]
    return max(found)[1] if found else None


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read a checkpoint folder (safetensors and a weights-only torch load: no code from disk runs)."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    if state.get("format") != FORMAT:
        raise TrainingError(f"The checkpoint {folder} has format {state.get('format')!r}; this engine reads {FORMAT}.")
    lora = load_file(str(folder / "lora.safetensors"))
    optimizer = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    return Checkpoint(step=int(state["step"]), lora=lora, optimizer=optimizer, state=state)


def rng_state() -> dict[str, Any]:
    """Every global random generator's state, as JSON."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": _b64(np.asarray(keys, dtype=np.uint32).tobytes()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = np.frombuffer(base64.b64decode(npy["keys"]), dtype=np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_tensor(s) for s in state["cuda"]])


def _prune(root: Path) -> None:
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := NAME.match(p.name)))
    for _step, path in found[:-KEEP]:
        shutil.rmtree(path, ignore_errors=True)
        log.info("checkpoint_removed", path=str(path))
    # Staging folders left by a crash mid-write are garbage: nothing refers to them.
    for path in root.glob(".step_*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()
