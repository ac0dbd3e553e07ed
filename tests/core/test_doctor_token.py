"""The doctor's token check against a hub of our own on loopback (tests/models/fake_hub.py), never the real one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isengard_desktop.context import AppContext
from isengard_desktop.core.doctor import run_checks
from isengard_desktop.core.secrets import set_hf_token
from tests.models.fake_hub import FakeHub

REPO = "black-forest-labs/FLUX.1-dev"


@pytest.fixture
def hub(fake_hub: FakeHub) -> FakeHub:
    fake_hub.add_file(REPO, "model_index.json", b"{}", lfs=False, gated=True)
    fake_hub.add_token("hf_accepted", {REPO: "accepted"})
    fake_hub.add_token("hf_waiting", {REPO: "pending"})
    return fake_hub


@pytest.fixture
def production(tmp_path: Path, test_keyring: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    # The token row only: the installed engines' health checks (torch imported in each engine's environment, ~10 s
    # of CPU per run of the checks) are tests/core/test_doctor.py's.
    for variable in ("ISENGARD_COMFYUI_DIR", "ISENGARD_COMFYUI_PYTHON", "ISENGARD_AITOOLKIT_DIR",
                     "ISENGARD_AITOOLKIT_PYTHON"):
        monkeypatch.delenv(variable, raising=False)
    ctx = AppContext.open(tmp_path / "vol", "production")
    yield ctx
    ctx.close()


def token_check(ctx: AppContext, online: bool = True):
    return next(c for c in run_checks(ctx, online=online, gpus=[]) if c.name == "Hugging Face token")


@pytest.mark.parametrize(("token", "status", "words", "action"), [
    (None, "warn", "No token is stored", "set_token"),
    ("hf_accepted", "ok", f"may download {REPO}", None),
    ("hf_waiting", "fail", "awaiting", None),
    ("hf_unknown", "fail", "token", "set_token"),
])
def test_token_answers(hub: FakeHub, production: AppContext, token: str | None, status: str, words: str,
                       action: str | None) -> None:
    if token:
        set_hf_token(token)
    check = token_check(production)
    assert check.status == status and words in check.detail and check.action == action
    if status == "fail":
        assert REPO in check.detail and hub.url in check.fix  # the link that fixes it, on this hub
    assert all(token not in text for text in (check.detail, check.fix) if token)  # never shown


def test_offline_run_does_not_ask_the_hub(hub: FakeHub, production: AppContext) -> None:
    set_hf_token("hf_unknown")
    assert token_check(production, online=False).status == "ok"
    assert not [r for r in hub.requests if "auth-check" in r.path]
