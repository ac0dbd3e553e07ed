"""The torch build rule over recorded nvidia-smi answers of real cards (there is no GPU here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from isengard_desktop.base.nvidia import Gpu, parse_nvidia_smi
from isengard_desktop.core.torch_builds import (
    TorchBuildError,
    choose_build,
    minimum_driver,
    newest_cuda,
    supports,
)

FIXTURES = Path(__file__).parent / "fixtures" / "gpus"


def recorded(name: str) -> list[Gpu]:
    return parse_nvidia_smi((FIXTURES / f"{name}.txt").read_text())


def test_parse_reads_every_field_of_a_real_answer() -> None:
    (gpu,) = recorded("rtx5090")
    assert gpu == Gpu("NVIDIA GeForce RTX 5090", "580.95.05", 32607, 1254, (12, 0))
    assert gpu.vram_gb == 31.8 and gpu.generation == "Blackwell" and gpu.cc == "12.0"
    two = recorded("two_gpus_5090_1080ti")
    assert [g.name for g in two] == ["NVIDIA GeForce RTX 5090", "NVIDIA GeForce GTX 1080 Ti"]
    assert two[1].generation == "Pascal"


def test_parse_tolerates_missing_values_and_commas_in_names() -> None:
    (gpu,) = parse_nvidia_smi("NVIDIA RTX A6000, Rev. 2, 580.95.05, [N/A], [Not Supported], 8.6\n\n")
    assert gpu.name == "NVIDIA RTX A6000, Rev. 2" and gpu.memory_total_mib is None and gpu.compute_capability == (8, 6)
    assert parse_nvidia_smi("garbage\n") == []


@pytest.mark.parametrize(("driver", "system", "cuda"), [
    ("595.58.03", "linux", "13.2"), ("580.95.05", "linux", "13.0"), ("570.133.07", "linux", "12.8"),
    ("535.183.01", "linux", "12.1"), ("576.02", "win32", "12.9"), ("591.59", "win32", "13.0"),
    ("470.82.01", "linux", None),
])
def test_driver_to_newest_cuda(driver: str, system: str, cuda: str | None) -> None:
    assert newest_cuda(driver, system) == cuda


def test_linux_and_windows_minimums_differ() -> None:
    assert minimum_driver("12.8", "linux") == "570.26" and minimum_driver("12.8", "win32") == "570.65"
    assert minimum_driver("13.0", "linux") == "580.65.06" and minimum_driver("13.0", "win32") == "580.88"


# torch 2.14 (the engines' pin): card -> the build its environment gets.
@pytest.mark.parametrize(("card", "tag"), [
    ("rtx5090", "cu130"),    # Blackwell: a CUDA 13 build; driver 580 is below cu132's 595.45.04
    ("rtx4090", "cu126"),    # driver 570 runs CUDA 12.8 at most: the 12.6 build (sm_86 kernels run on 8.9)
    ("rtx3090", "cu132"),    # driver 595: PyPI's own build
    ("a100", "cu130"),
    ("t4", "cu130"),
    ("v100", "cu126"),       # CUDA 13 builds dropped Volta
    ("gtx1080ti", "cu126"),  # and Pascal
    ("two_gpus_4090_3090", "cu130"),
])
def test_engine_torch_build_per_card(card: str, tag: str) -> None:
    build = choose_build(recorded(card), "2.14.1", "linux")
    assert build.tag == tag
    assert build.index_url == f"https://download.pytorch.org/whl/{tag}"
    assert build.pip_args == ("--index-url", build.index_url)
    assert build.requirement("torch", "2.14.1") == f"torch==2.14.1+{tag}"
    assert build.unsupported == ()


def test_app_torch_213_on_blackwell_is_its_pypi_build() -> None:
    build = choose_build(recorded("rtx5090"), "2.13.0", "linux")
    assert build.tag == "cu130" and "NVIDIA GeForce RTX 5090 (12.0)" in build.reason


def test_old_driver_is_told_which_driver_to_install() -> None:
    with pytest.raises(TorchBuildError, match=r"update the NVIDIA driver to 560\.28\.03 or newer"):
        choose_build(recorded("rtx3090_old_driver"), "2.14.1", "linux")


def test_blackwell_on_a_windows_cuda_12_9_driver_needs_580_88() -> None:
    # cu126 has no Blackwell kernels; cu130 needs 580.88 on Windows; cu132 has no published Windows minimum.
    with pytest.raises(TorchBuildError, match=r"update the NVIDIA driver to 580\.88 or newer"):
        choose_build(recorded("rtx5090_windows"), "2.14.1", "win32")


def test_cards_of_two_generations_without_a_common_build() -> None:
    build = choose_build(recorded("two_gpus_5090_1080ti"), "2.14.1", "linux")
    assert build.tag == "cu130" and build.unsupported == ("NVIDIA GeForce GTX 1080 Ti",)
    assert "not the NVIDIA GeForce GTX 1080 Ti" in build.reason


def test_no_gpu_and_unknown_torch() -> None:
    assert choose_build([], "2.14.1").tag == "cpu"
    with pytest.raises(TorchBuildError, match="no record of the CUDA builds of torch 1.13.1"):
        choose_build(recorded("t4"), "1.13.1")


def test_a_card_no_build_carries() -> None:
    kepler = Gpu("Tesla K80", "580.95.05", 11441, 0, (3, 7))
    with pytest.raises(TorchBuildError, match="No torch 2.14.1 build has kernels for the Tesla K80"):
        choose_build([kepler], "2.14.1", "linux")


def test_supports_reads_torch_arch_lists() -> None:
    (blackwell,) = recorded("rtx5090")
    (ada,) = recorded("rtx4090")
    cu126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
    cu130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]
    ok, why = supports(blackwell, "12.6", cu126, "linux")
    assert not ok and "no kernels for the NVIDIA GeForce RTX 5090 (Blackwell, compute capability 12.0" in why
    assert supports(blackwell, "13.0", cu130, "linux")[0]
    assert supports(ada, "12.6", cu126, "linux")[0]  # sm_86 runs on 8.9
    ok, why = supports(ada, "13.0", cu130, "linux")  # the kernels are there, the 570 driver is not enough
    assert not ok and "needs NVIDIA driver 580.65.06 or newer" in why
    assert supports(ada, None, [], "linux") == (False, "this torch is a CPU-only build")
    # PTX of an older architecture is compiled by the driver for a newer card.
    assert supports(Gpu("future", "700.1", 1, 0, (13, 0)), "13.0", cu130, "linux")[0]


# The pip command lines an engine's environment is built with (core/engines_install.py).
def test_engine_pip_commands_per_card() -> None:
    from isengard_desktop.core.engines_install import TORCH, torch_install_args

    assert torch_install_args("aitoolkit", []) == [TORCH]  # no GPU: as before, the pinned torch from local disk
    assert torch_install_args("comfyui", recorded("rtx5090"), "linux") == [
        ["torch==2.14.1+cu130", "torchvision==0.29.1+cu130", "--index-url", "https://download.pytorch.org/whl/cu130"]]
    assert torch_install_args("aitoolkit", recorded("gtx1080ti"), "linux") == [
        ["torch==2.14.1+cu126", "torchvision==0.29.1+cu126", "--index-url", "https://download.pytorch.org/whl/cu126"],
        ["bitsandbytes==0.50.2"]]
    assert torch_install_args("aitoolkit", recorded("rtx3090"), "linux")[0][:2] == [
        "torch==2.14.1+cu132", "torchvision==0.29.1+cu132"]
    with pytest.raises(TorchBuildError, match="560.28.03"):
        torch_install_args("comfyui", recorded("rtx3090_old_driver"), "linux")


def test_bitsandbytes_pin_carries_every_cuda_runtime_the_rule_can_choose() -> None:
    from isengard_desktop.core.torch_builds import rules

    data = rules()
    chosen = {b["cuda"] for r in data["torch"]["releases"].values() for b in r["builds"].values()}
    assert chosen <= set(data["bitsandbytes"]["cuda"])


def test_install_refuses_an_old_driver_before_writing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from isengard_desktop.core.engines_install import install

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat {FIXTURES / 'rtx3090_old_driver.txt'}\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(TorchBuildError, match=r"update the NVIDIA driver to 560\.28\.03 or newer"):
        install("comfyui", tmp_path / "volume")
    assert not (tmp_path / "volume").exists()
