"""A checkpoint that meets a full disk says so as a full disk (ENOSPC), whichever of its files the disk refuses,
so the person reads "free some space" rather than torch's "unexpected pos"; the previous checkpoint stays whole."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch

from engines.diffusers import checkpoint
from tests.conftest import tmpfs


def _leave_free(disk: Path, free: int) -> None:
    """Fill the disk until about ``free`` bytes are left."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        for chunk in (1 << 16, 4096):
            while shutil.disk_usage(disk).free - chunk >= free:
                handle.write(b"\0" * chunk)


def test_the_optimizer_state_meeting_a_full_disk_is_a_full_disk(tmp_path: Path) -> None:
    lora = {"transformer.x.lora_A.weight": torch.ones(64, 256)}  # 64 kB: fits
    optimizer = {"state": {0: {"exp_avg": torch.ones(512, 512)}}, "param_groups": []}  # 1 MB: does not
    with tmpfs(tmp_path / "disk", "4m") as disk:
        root = disk / "checkpoints"
        first = checkpoint.save_checkpoint(root, 20, lora, {"state": {}, "param_groups": []}, {})
        _leave_free(disk, 300_000)
        with pytest.raises(OSError) as raised:
            checkpoint.save_checkpoint(root, 40, lora, optimizer, {})
        assert raised.value.errno == errno.ENOSPC
        assert checkpoint.latest_checkpoint(root) == first  # what a resume continues from is untouched
