"""tools/refresh_catalogue.py fills sizes and sha256 from the hub's paths-info API (tried against the fake hub)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.models import tiny_catalogue as tiny
from tests.models.fake_hub import FakeHub

TOOL = Path(__file__).resolve().parents[2] / "tools" / "refresh_catalogue.py"


def load_tool():  # noqa: ANN201 - a module loaded from its path (tools/ is not a package)
    spec = importlib.util.spec_from_file_location("refresh_catalogue", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordedApi:
    """Answers get_paths_info as the real hub did for these files (RepoFile objects built from JSON)."""

    def __init__(self, answers: dict[str, dict]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, list[str], str]] = []

    def get_paths_info(self, repo: str, paths: list[str], *, expand: bool, revision: str):  # noqa: ANN201
        from huggingface_hub.hf_api import RepoFile

        self.calls.append((repo, list(paths), revision))
        return [RepoFile(**self.answers[p]) for p in paths if p in self.answers]


def test_refresh_fills_what_the_hub_publishes_and_shouts_a_changed_sha() -> None:
    tool = load_tool()
    data = tiny.catalogue_data()
    files = data["models"][0]["files"]
    files["ae"]["sha256"] = files["ae"]["size"] = None
    answers = {
        "ae.safetensors": {"type": "file", "path": "ae.safetensors", "size": 135, "oid": "a" * 40,
                           "lfs": {"size": tiny.FILES["ae"][2], "oid": tiny.sha256("ae"), "pointerSize": 135}},
        "model_index.json": {"type": "file", "path": "model_index.json", "size": 60, "oid": "b" * 40},
        "vae/diffusion_pytorch_model.safetensors": {
            "type": "file", "path": "vae/diffusion_pytorch_model.safetensors", "size": 135, "oid": "c" * 40,
            "lfs": {"size": tiny.FILES["vae"][2], "oid": "f" * 64, "pointerSize": 135}},
    }
    api = RecordedApi(answers)
    changes = tool.refresh(data, api, today="2026-11-29")
    assert files["ae"]["sha256"] == tiny.sha256("ae") and files["ae"]["size"] == tiny.FILES["ae"][2]
    assert "paths-info API for test-org/tiny-flux@main, 2026-11-29" in files["ae"]["source"]
    assert files["model_index"]["size"] == 60 and files["model_index"]["sha256"] is None
    assert any(line.startswith("SHA256 CHANGED: test-org/tiny-flux/vae/") for line in changes)
    assert any(line.startswith("MISSING on the hub: test-org/tiny-flux@main/transformer/") for line in changes)
    assert [repo for repo, _, _ in api.calls] == [tiny.REPO, tiny.ENCODERS]  # one request per repository


def test_refresh_against_the_fake_hub() -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    tool = load_tool()
    with FakeHub() as hub:
        tiny.publish(hub, gated_token=None)
        data = tiny.catalogue_data()
        try:
            changes = tool.refresh(data, HfApi(endpoint=hub.url))
        except HfHubHTTPError as exc:
            pytest.skip(f"the fake hub does not answer the paths-info API (POST /api/models/<repo>/paths-info/"
                        f"<revision>): {str(exc)[:80]}")
    assert not [line for line in changes if line.startswith("SHA256 CHANGED")]
