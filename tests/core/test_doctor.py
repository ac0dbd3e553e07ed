"""The doctor on a healthy volume and on broken ones: a file where a folder should be, a full disk, an engine whose
python is broken, a ComfyUI listening on every interface, and recorded GPUs that the app's torch cannot run."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from isengard_desktop.base.nvidia import parse_nvidia_smi
from isengard_desktop.context import AppContext
from isengard_desktop.core.doctor import report, run_checks
from tests.conftest import tmpfs

FIXTURES = Path(__file__).parent / "fixtures" / "gpus"
NAMES = {"Volume folder", "Free disk space", "GPU", "RAM", "PyTorch (app)", "Engine aitoolkit", "Engine comfyui",
         "Hugging Face token", "ComfyUI network"}


def recorded(name: str) -> list:
    return parse_nvidia_smi((FIXTURES / f"{name}.txt").read_text())


@pytest.fixture(autouse=True)
def no_dev_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ISENGARD_COMFYUI_DIR", "ISENGARD_COMFYUI_PYTHON", "ISENGARD_AITOOLKIT_DIR",
                     "ISENGARD_AITOOLKIT_PYTHON"):
        monkeypatch.delenv(variable, raising=False)


def open_ctx(root: Path, mode: str = "fast-test") -> Iterator[AppContext]:
    ctx = AppContext.open(root, mode)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    yield from open_ctx(tmp_path / "vol")


@pytest.fixture
def production(tmp_path: Path) -> Iterator[AppContext]:
    yield from open_ctx(tmp_path / "vol", "production")


def by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def test_healthy_fast_test_volume_without_gpu(ctx: AppContext) -> None:
    checks = run_checks(ctx, online=False, gpus=[])
    found = by_name(checks)
    assert NAMES <= set(found)
    assert [c.name for c in checks if c.status == "fail"] == []
    assert found["GPU"].status == "ok" and "fast-test" in found["GPU"].detail
    assert found["PyTorch (app)"].status == "ok" and "torch 2.13.0" in found["PyTorch (app)"].detail
    assert all(c.fix for c in checks)  # every check says what to do, even if it is nothing
    data = json.loads(json.dumps(report(checks)))
    assert set(data) == {"checks", "summary"}
    assert set(data["checks"][0]) == {"name", "status", "detail", "fix", "action"}
    assert data["summary"]["fail"] == 0 and data["summary"]["ok"] + data["summary"]["warn"] == len(checks)


def test_a_file_where_a_volume_folder_should_be(ctx: AppContext) -> None:
    ctx.volume.outputs_dir.rmdir()
    ctx.volume.outputs_dir.write_text("not a folder")
    volume = by_name(run_checks(ctx, online=False, gpus=[]))["Volume folder"]
    assert volume.status == "fail" and "outputs is a file where a folder should be" in volume.detail
    assert volume.action == "open_settings:volume" and "Choose another volume folder" in volume.fix


def test_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tiny", "4m") as mount:
        for ctx in open_ctx(mount / "vol"):
            try:  # fill the disk to the last byte
                with open(mount / "filler", "wb") as filler:
                    for size in (65536, 512, 1):
                        try:
                            while True:
                                filler.write(b"\0" * size)
                                filler.flush()
                        except OSError:
                            continue
            except OSError:
                pass
            found = by_name(run_checks(ctx, online=False, gpus=[]))
            space, volume = found["Free disk space"], found["Volume folder"]
            assert space.status == "fail" and space.detail.startswith("0 B free") and "needs 1.0 GB" in space.detail
            assert volume.status == "fail" and "No space left on device" in volume.detail
            (mount / "filler").unlink()  # so the context can close its database cleanly


def test_an_engine_whose_python_is_broken(ctx: AppContext) -> None:
    engine = ctx.volume.root / "engines" / "comfyui"
    (engine / "src").mkdir(parents=True)
    (engine / "src" / ".isengard-commit").write_text("a125cd84\n")
    (engine / "src" / "main.py").write_text("")  # what makes the checkout ComfyUI's (engines/comfyui/paths.UPSTREAM)
    python = engine / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho 'ImportError: libtorch_cuda.so: cannot open shared object file' >&2\nexit 1\n")
    python.chmod(0o755)
    found = by_name(run_checks(ctx, online=False, gpus=[]))
    assert found["Engine comfyui"].status == "fail" and "cannot import torch" in found["Engine comfyui"].detail
    assert found["Engine comfyui"].action == "install_engine:comfyui"
    torch = found["PyTorch (comfyui)"]
    assert torch.status == "fail" and "libtorch_cuda.so" in torch.detail and torch.action == "install_engine:comfyui"


@pytest.mark.parametrize(("host", "status"), [("0.0.0.0", "fail"), ("127.0.0.1", "ok")])
def test_comfyui_listening_address(ctx: AppContext, host: str, status: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        state = ctx.volume.root / "engines" / "comfyui" / "run" / "server.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"state": "ready", "pid": os.getpid(), "port": port,
                                     "url": f"http://127.0.0.1:{port}"}))
        check = by_name(run_checks(ctx, online=False, gpus=[]))["ComfyUI network"]
    finally:
        server.close()
    assert check.status == status and f"{host}:{port}" in check.detail
    if status == "fail":
        assert "no password" in check.detail and check.action == "stop_engine:comfyui"


def test_blackwell_card_with_the_apps_cpu_torch(production: AppContext) -> None:
    found = by_name(run_checks(production, online=False, gpus=recorded("rtx5090")))
    assert found["GPU"].status == "ok" and "31.8 GB VRAM, Blackwell (compute capability 12.0)" in found["GPU"].detail
    assert found["VRAM"].status == "ok"
    assert found["NVIDIA driver"].status == "ok" and "runs CUDA 13.0 builds" in found["NVIDIA driver"].detail
    app = found["PyTorch (app)"]
    assert app.status == "fail" and "CPU-only build" in app.detail
    assert "torch==2.13.0+cu130 --index-url https://download.pytorch.org/whl/cu130" in app.fix
    assert "bitsandbytes==0.50.2" in app.fix and app.action == "install_torch:app"


def test_old_driver_and_small_card_in_production(production: AppContext) -> None:
    found = by_name(run_checks(production, online=False, gpus=recorded("rtx3090_old_driver")))
    assert found["NVIDIA driver"].status == "fail"
    assert "Update the NVIDIA driver to 560.28.03 or newer" in found["NVIDIA driver"].fix
    assert "update the NVIDIA driver to 560.28.03" in found["PyTorch (app)"].fix
    assert found["PyTorch (app)"].action is None  # no command to copy: the driver comes first
    small = by_name(run_checks(production, online=False, gpus=recorded("gtx1080ti")))["VRAM"]
    assert small.status == "fail" and "11.0 GB of VRAM" in small.detail and "needs about 24 GB" in small.detail


def test_the_vram_check_names_what_each_engine_runs_by_the_memory_plan(production: AppContext) -> None:
    card = by_name(run_checks(production, online=False, gpus=recorded("rtx4090")))["VRAM"]
    assert card.status == "ok" and card.detail.startswith("24.0 GB: AI-Toolkit runs Quick, Balanced")
    big = by_name(run_checks(production, online=False, gpus=recorded("a100")))["VRAM"]
    assert "the built-in engine runs" in big.detail and "High Quality" in big.detail


def test_production_without_gpu_fails_the_gpu_check(production: AppContext) -> None:
    found = by_name(run_checks(production, online=False, gpus=[]))
    assert found["GPU"].status == "fail" and "fast-test" in found["GPU"].fix


def test_query_gpus_reads_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isengard_desktop.base.mode import query_gpus

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    answer = FIXTURES / "two_gpus_4090_3090.txt"
    smi.write_text(f"#!/bin/sh\ncase \"$1\" in --query-gpu=name,driver_version,memory.total,memory.used,compute_cap) "
                   f"cat {answer};; *) exit 2;; esac\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert [g.name for g in query_gpus()] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"]


def test_query_gpus_without_a_driver_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isengard_desktop.base.mode import query_gpus

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi; NVML finds no driver library here either
    assert query_gpus() == []
