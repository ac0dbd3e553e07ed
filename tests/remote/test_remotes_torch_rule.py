"""Which torch bootstrap installs on a remote: the first-run rule for the remote's GPUs (no remote GPU here, so the
check's parsed report stands in for one)."""

from __future__ import annotations

from isengard_desktop.core.remote.bootstrap import app_dependencies, app_torch_pin, torch_args
from isengard_desktop.core.remote.check import parse_report


def test_a_cpu_remote_gets_the_pinned_torch_and_a_gpu_remote_its_cuda_build() -> None:
    cpu = parse_report("cpu", "dir=/r\nos=Linux\npython=/usr/bin/python3 3.11.2\ndisk=1048576\n")
    assert torch_args(cpu) == [f"torch=={app_torch_pin()}"] and app_torch_pin() == "2.13.0"
    gpu = parse_report("gpu", "dir=/r\npython=/usr/bin/python3 3.11.2\n"
                              "gpu=NVIDIA GeForce RTX 3090, 595.58.03, 24576, 1021, 8.6\n")
    assert gpu.gpus[0].vram_gb == 24.0 and gpu.free_disk_gb is None
    args = torch_args(gpu)
    assert args[0].startswith("torch==2.13.0+cu") and args[1] == "--index-url"
    assert args[2] == "https://download.pytorch.org/whl/" + args[0].split("+")[1]
    assert "GPU: NVIDIA GeForce RTX 3090, 24.0 GB VRAM, driver 595.58.03" in gpu.lines()[0]


def test_the_remote_gets_no_gui_dependencies() -> None:
    deps = [d.lower() for d in app_dependencies()]
    assert deps and not any(d.startswith(("pyside6", "pyqtgraph", "torch")) for d in deps)
    assert any(d.startswith("diffusers") for d in deps)
