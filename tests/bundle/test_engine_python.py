"""Which Python builds an engine's environment, from the source checkout and from the bundle (sys.frozen)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pip
import pytest

from isengard_desktop.core import engine_python
from isengard_desktop.core.engine_python import EnginePython, NoEnginePythonError


def test_source_checkout_uses_its_own_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(engine_python.PYTHON_ENV, raising=False)
    assert engine_python.find_engine_python().path == Path(sys.executable)


def test_bundle_without_a_python_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.delenv(engine_python.PYTHON_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(NoEnginePythonError) as caught:
        engine_python.find_engine_python()
    message = str(caught.value)
    assert "Python 3.10 to 3.13" in message and "sudo apt install python3" in message
    assert engine_python.PYTHON_ENV in message


def test_bundle_skips_an_unsupported_python_and_finds_a_supported_one(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """A python3 that is too old is named in the refusal; a python3.11 beside it is chosen."""
    old = tmp_path / "old"
    old.mkdir()
    fake = old / "python3"
    fake.write_text("#!/bin/sh\nprintf '3.8\\n1\\n1\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.delenv(engine_python.PYTHON_ENV, raising=False)
    monkeypatch.setenv("PATH", str(old))
    with pytest.raises(NoEnginePythonError, match=r"found only .*python3 \(3\.8\)"):
        engine_python.find_engine_python()

    good = tmp_path / "good"
    good.mkdir()
    (good / "python3.11").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{old}:{good}")
    found = engine_python.find_engine_python()
    assert found.path == good / "python3.11" and found.version == sys.version_info[:2]


def test_a_wrong_override_is_refused_in_one_sentence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(engine_python.PYTHON_ENV, str(tmp_path / "no-python"))
    with pytest.raises(NoEnginePythonError, match="does not run; point it at Python 3.10 to 3.13 or unset it"):
        engine_python.find_engine_python()


def test_without_ensurepip_pip_is_bootstrapped_from_a_pip_folder(tmp_path: Path) -> None:
    """Debian/Ubuntu without python3-venv: venv --without-pip, then pip from the bundle's copy installs pip."""
    source = tmp_path / "pip_bootstrap"
    shutil.copytree(Path(pip.__file__).parent, source / "pip")
    python = EnginePython(Path(sys.executable), sys.version_info[:2], has_ensurepip=False)
    venv = tmp_path / "venv"
    for command, extra_env in engine_python.venv_commands(venv, python, pip_source=source):
        env = None if extra_env is None else {**os.environ, **extra_env}
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    shutil.rmtree(source)  # the environment's pip must be its own, not the bootstrap copy
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], capture_output=True, text=True,
                         check=True)
    assert str(venv) in out.stdout


def test_without_ensurepip_and_outside_the_bundle_the_refusal_names_the_package() -> None:
    python = EnginePython(Path("/usr/bin/python3.11"), (3, 11), has_ensurepip=False)
    with pytest.raises(NoEnginePythonError, match="install python3.11-venv"):
        engine_python.venv_commands(Path("/nowhere"), python)
