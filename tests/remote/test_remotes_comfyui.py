"""A ComfyUI by URL (Settings → Engines) instead of the embedded one: a real ComfyUI started as a separate process
on another port (as a person's bigger box runs one), used through its URL; the LoRA a generation needs is copied to
that machine over SSH (ComfyUI has no LoRA upload) because its host is a registered remote; the embedded ComfyUI is
never started. The auth header goes from the keyring onto every request, never into settings.json or a log."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engines.comfyui.paths import locate
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation
from isengard_desktop.core.remote import registry
from tests.conftest import stop_process
from tests.remote.conftest import SshdServer

LOCATED = locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
CACHE = Path(os.environ.get("ISENGARD_TEST_CACHE", Path.home() / ".cache" / "isengard-tests"))
needs_comfyui = pytest.mark.skipif(isinstance(LOCATED, str), reason="needs a real ComfyUI: set ISENGARD_COMFYUI_DIR "
                                   f"and ISENGARD_COMFYUI_PYTHON (the engines cache; {LOCATED})")


def _set_url(ctx: AppContext, url: str) -> None:
    from isengard_desktop.storage import settings as settings_store

    ctx.settings.comfyui_url = url
    settings_store.save(ctx.volume.settings_path, ctx.settings)


@pytest.fixture(scope="module")
def other_comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A ComfyUI of its own (its own base folder and models), on 127.0.0.1 at a free port: (url, base folder)."""
    from engines.comfyui.fast_test_models import ensure
    from engines.comfyui.supervisor import free_port

    checkout, python = LOCATED  # type: ignore[misc]
    base = tmp_path_factory.mktemp("other-comfyui")
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "user").mkdir()
    os.link(ensure(CACHE, checkout, python)["checkpoint"], base / "models" / "checkpoints" / "tiny-sd15.safetensors")
    port = free_port()
    log = (base / "comfyui.log").open("wb")
    proc = subprocess.Popen([str(python), str(checkout / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port",
                             str(port), "--disable-auto-launch", "--dont-print-server", "--disable-api-nodes",
                             "--disable-all-custom-nodes", "--base-directory", str(base),
                             "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=checkout, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    from engines.comfyui.client import ComfyUIClient, ComfyUIError

    deadline = time.monotonic() + 120
    while True:
        try:
            ComfyUIClient(url).system_stats(timeout=1.0)
            break
        except ComfyUIError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the other ComfyUI did not start: {(base / 'comfyui.log').read_text()[-600:]}")
            time.sleep(0.3)
    yield url, base
    stop_process(proc, timeout=20)
    log.close()


@pytest.mark.slow
@needs_comfyui
def test_generation_uses_the_comfyui_by_url_and_sends_the_lora_over_ssh(
        other_comfyui: tuple[str, Path], ssh_env: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        test_keyring: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from engines.comfyui.supervisor import read_server

    url, base = other_comfyui
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        # The machine of that ComfyUI is a registered remote (same host): LoRAs go to it over SSH.
        registry.add_remote(ctx.volume, ssh_env.remote("comfybox"), ctx.settings)
        _set_url(ctx, url)
        ctx.start_service("comfyui")
        service = ctx.service("comfyui")
        deadline = time.monotonic() + 30
        while service.status().state in ("stopped", "starting") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.status().state == "ready" and service.status().url == url, service.status().detail
        assert f"Using the ComfyUI at {url}" in service.status().detail

        lora = ctx.volume.loras_dir / "ada-sd.safetensors"
        save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.ones(2, 8)}, str(lora),
                  metadata={"isengard.base_model": "tiny-sd15"})
        option = generation.LoraOption(1, 1, "Ada", lora, "tiny-sd15", "diffusers", 4, "")
        request = generation.build_request(ctx.volume, ctx.mode, "comfyui", "a photo of ohwx_ada",
                                           [(option, 0.8)], seed=5, steps=3)
        final = ctx.jobs.wait(ctx.jobs.submit("generation", "comfyui", request.to_dict()).id, timeout=180)
        assert final.state == "succeeded", final.error
        assert len(final.result["images"]) == 1 and Path(final.result["images"][0]).stat().st_size > 0
        # The LoRA is now in that ComfyUI's own loras folder (the one it reports), byte for byte.
        sent = base / "models" / "loras" / "ada-sd.safetensors"
        assert sent.read_bytes() == lora.read_bytes()
        # The embedded ComfyUI never ran for this volume.
        assert read_server(ctx.volume.root).state == "stopped"
    finally:
        ctx.jobs.shutdown(wait=10)
        ctx.close()


def test_a_url_whose_host_is_no_remote_says_which_lora_to_copy(tmp_path: Path) -> None:
    from engines.comfyui.client import ComfyUIError
    from engines.comfyui.remote import send_loras
    from isengard_desktop.core.remote.file_copy import lent
    from isengard_desktop.storage.volume import Volume

    class Listed:
        url = "http://gpu.example:8188"

        def models(self, folder: str) -> list[str]:
            return ["other.safetensors"]

    lora = tmp_path / "ada.safetensors"
    lora.write_bytes(b"x")
    AppContext.open(tmp_path / "vol", "fast-test").close()
    with pytest.raises(ComfyUIError, match="does not list the LoRA ada.safetensors; add that machine under Settings"):
        send_loras(Listed(), [lora], lent(Volume(tmp_path / "vol")).file_copier,  # type: ignore[arg-type]
                   lambda _t: None)


def test_the_auth_header_comes_from_the_keyring_onto_each_request(test_keyring: Path, tmp_path: Path) -> None:
    from engines.comfyui.remote import RemoteComfyUIService
    from isengard_desktop.core.remote.file_copy import lent
    from isengard_desktop.core.secrets import set_comfyui_auth
    from isengard_desktop.storage.volume import Volume

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == "Bearer s3cret"
            body = json.dumps({"system": {"comfyui_version": "0.3.64"}} if ok else {"error": "no"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        service = RemoteComfyUIService(url, lent(Volume(tmp_path)).auth_header)  # the app's keyring reader
        service.start()
        service.stop()
        assert service.status().state == "stopped" and seen == [None]
        states: list[str] = []
        service.subscribe(lambda status: states.append(status.state))
        set_comfyui_auth("Authorization: Bearer s3cret")
        service.start()
        service._thread.join(10)  # type: ignore[union-attr]
        assert states == ["starting", "ready"] and seen[-1] == "Bearer s3cret"
        assert "0.3.64" in service.status().detail
    finally:
        server.shutdown()
    # Stored in the keyring file of this test, nowhere in a volume.
    assert "s3cret" in test_keyring.read_text()
