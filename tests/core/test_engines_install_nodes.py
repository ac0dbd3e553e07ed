"""ComfyUI's pinned node packs: the pins' structure, export at the pinned commit into base/custom_nodes,
requirement filtering, and a reinstall that keeps ComfyUI's base folder (database, inputs, outputs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from isengard_desktop.core import engines_install
from isengard_desktop.core.engines_install import _requirement_lines, _swap, export_source, node_packs
from isengard_desktop.core.engines_status import pins

TOGGLE_PACKS = {"ipadapter": {"ComfyUI-IPAdapter-Flux"},
                "facedetailer": {"ComfyUI-Impact-Pack", "ComfyUI-Impact-Subpack"}}


def test_vendor_pins_structure() -> None:
    data = pins()
    assert data["schema_version"] == 1
    comfy = data["engines"]["comfyui"]
    assert comfy["commit"] == "a125cd84" and comfy["date"] == "2025-10-12"
    for engine in data["engines"].values():
        assert {"repository", "commit", "date", "license", "verified", "requirements_policy"} <= set(engine)
    packs = data["custom_nodes"]
    assert set(packs) == set().union(*TOGGLE_PACKS.values())
    for key, pack in packs.items():
        assert {"engine", "repository", "commit", "date", "license", "toggles", "directory", "nodes",
                "requirements_policy", "verified"} <= set(pack), key
        assert pack["engine"] == "comfyui"
        assert len(pack["commit"]) == 40 and int(pack["commit"], 16) >= 0, key
        assert pack["repository"].startswith("https://github.com/") and pack["repository"].endswith(key)
        assert isinstance(pack["requirements_policy"].get("skip"), list)
    for toggle, keys in TOGGLE_PACKS.items():
        assert {key for key, pack in packs.items() if toggle in pack["toggles"]} == keys
    order = list(node_packs("comfyui"))
    assert order.index("ComfyUI-Impact-Pack") < order.index("ComfyUI-Impact-Subpack")  # parent folder first
    assert node_packs("aitoolkit") == {}


def test_requirement_lines_skip_by_name_and_prefix(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("torch\ntorchsde\ntorchvision>=0.2\n# comment\nnumpy<2\n\ngit+https://x/y.git\n"
                    "einops==0.8.0  # pinned\ntorchaudio\n")
    assert _requirement_lines(path, ("torch", "torchvision", "torchaudio", "numpy", "git+")) == \
        ["torchsde", "einops==0.8.0"]


def _repo(path: Path, files: dict[str, str]) -> str:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "x"],
                   check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_packs_are_exported_at_their_pin_and_base_survives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pack = _repo(tmp_path / "pack", {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "dill\n"})
    sub = _repo(tmp_path / "sub", {"impact/subpack_nodes.py": "# nodes\n"})
    fake = {"Pack": {"engine": "comfyui", "repository": "https://example.invalid/Pack", "commit": pack[:8],
                     "directory": "Pack", "requirements_policy": {"skip": ["numpy (why)"]}},
            "Sub": {"engine": "comfyui", "repository": "https://example.invalid/Sub", "commit": sub,
                    "directory": "Pack/impact_subpack", "requirements_policy": {"skip": []}}}
    monkeypatch.setattr(engines_install, "node_packs", lambda name: fake)
    staging = tmp_path / "volume" / "engines" / ".comfyui.installing"
    log = tmp_path / "log.txt"
    log.write_text("")
    for key, pin in fake.items():
        assert export_source(key, tmp_path / key.lower(), staging / "node_packs" / pin["directory"], log, pin=pin) \
            == {"Pack": pack, "Sub": sub}[key]
    (staging / "src").mkdir()
    (staging / "src" / "main.py").write_text("# new\n")

    final = tmp_path / "volume" / "engines" / "comfyui"
    (final / "base" / "user").mkdir(parents=True)
    (final / "base" / "user" / "comfyui.db").write_text("the database")
    (final / "base" / "custom_nodes" / "Pack").mkdir(parents=True)
    (final / "base" / "custom_nodes" / "Pack" / "stale.py").write_text("old")
    (final / "base" / "custom_nodes" / "SomethingElse").mkdir()
    (final / "src").mkdir()
    (final / "src" / "main.py").write_text("# old\n")

    _swap(staging, final, final.parent / ".comfyui.previous", fake)
    assert (final / "src" / "main.py").read_text() == "# new\n"
    assert (final / "base" / "user" / "comfyui.db").read_text() == "the database"
    nodes = final / "base" / "custom_nodes"
    assert sorted(p.name for p in nodes.iterdir()) == ["Pack", "SomethingElse"]
    assert not (nodes / "Pack" / "stale.py").exists()
    assert (nodes / "Pack" / "impact_subpack" / "impact" / "subpack_nodes.py").is_file()
    assert (nodes / "Pack" / ".isengard-commit").read_text().strip() == pack
    assert not (final / "node_packs").exists() and not (final.parent / ".comfyui.previous").exists()


def test_a_pack_source_without_the_pin_is_refused(tmp_path: Path) -> None:
    _repo(tmp_path / "pack", {"a.py": ""})
    pin = {"repository": "https://example.invalid/Pack", "commit": "0123456789abcdef0123456789abcdef01234567"}
    log = tmp_path / "log.txt"
    with pytest.raises(engines_install.InstallError, match="does not contain the pinned commit 0123456789ab"):
        export_source("Pack", tmp_path / "pack", tmp_path / "out", log, pin=pin)


def test_pins_file_is_valid_json_with_a_trailing_newline() -> None:
    from isengard_desktop.core.engines_status import pins_path

    text = pins_path().read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text)
