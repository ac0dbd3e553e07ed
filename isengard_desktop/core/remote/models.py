"""Base models on a remote: ask the remote's own app whether a model is ready in its volume, and download it
there when it is not (ERROR_LIST E35).

A remote job's spec points at the base model in the *remote* volume, so the model manager must run there. Both
steps are the remote's CLI over SSH: ``models list --json`` (cheap: sizes only, no hashing) and
``models download NAME --token-stdin --json``, whose JSON event lines are relayed as progress here. The Hugging
Face token comes from this computer's keyring and travels on the SSH channel's stdin only: never on a command
line (a process listing there or here would show it), never in an environment variable, never in a log.
HF_ENDPOINT and ISENGARD_MODEL_CATALOGUE of this computer are passed on when set (a mirror, or the tests' fake
hub and tiny catalogue); they are no secrets.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.ssh import Remote

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]
FORWARDED_ENV = ("HF_ENDPOINT", "ISENGARD_MODEL_CATALOGUE")
# The base model a production spec names (its folder in the volume's models/) -> its id in the model catalogue.
CATALOGUE_IDS = {"FLUX.1-dev": "flux1-dev"}
PROGRESS_EVERY_S = 2.0


class RemoteModelError(IsengardError):
    """The base model could not be made ready on the remote; the message says what to do."""


class RemoteApp(Protocol):
    """What is needed of the app installed on a remote (bootstrap.RemoteInstall and sync.RemoteSide have it)."""

    remote: Remote
    python: str
    volume: str


def _cli(install: RemoteApp, *args: str) -> list[str]:
    forwarded = [f"{name}={os.environ[name]}" for name in FORWARDED_ENV if os.environ.get(name)]
    prefix = ["env", *forwarded] if forwarded else []
    return [*prefix, str(install.python), "-m", "isengard_desktop", "--volume", str(install.volume), *args]


def remote_model_ready(install: RemoteApp, model: str, engine: str | None = None) -> bool:
    """Whether ``model`` (a catalogue id) is complete in the remote volume for ``engine`` (any engine if None)."""
    out = ssh.run(install.remote, _cli(install, "models", "list", "--json"), timeout=300)
    rows = json.loads(out.stdout or b"[]")
    row = next((r for r in rows if r.get("id") == model), None)
    if row is None:
        raise RemoteModelError(f"The app on {install.remote.name} does not know the model {model!r}; run isengard "
                               f"remotes bootstrap {install.remote.name} to update it, then try again.")
    engines = row.get("engines", {})
    return any(status.get("ready") for name, status in engines.items() if engine in (None, name))


def ensure_remote_model(install: RemoteApp, model: str, progress: Progress | None = None,
                        token: str | None = None, engine: str | None = None) -> bool:
    """Make ``model`` ready in the remote volume, downloading it there if needed (the token, from this computer's
    keyring when not given, goes on stdin). True when something was downloaded; raises RemoteModelError."""
    say = progress or (lambda _text: None)
    name = install.remote.name
    if remote_model_ready(install, model, engine):
        log.info("remote_model_ready", remote=name, model=model)
        return False
    if token is None:
        from isengard_desktop.core.secrets import get_hf_token

        token = get_hf_token()
    say(f"Downloading the base model {model} on {name} (the first remote run needs it there)")
    log.info("remote_model_download_started", remote=name, model=model, has_token=token is not None)
    args = ["models", "download", model, "--token-stdin", "--json"] + (["--for", engine] if engine else [])
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = ssh.popen(install.remote, _cli(install, *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=err)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(((token or "") + "\n").encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the remote side ended early: its status and stderr say why
        state, error = _relay(proc.stdout, model, name, say)
        code = proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if code == ssh.SSH_FAILED:
        raise ssh.diagnose(install.remote, stderr)
    if state != "succeeded":
        last = error or next((ln.removeprefix("isengard: ") for ln in reversed(stderr.splitlines()) if ln.strip()),
                             f"status {code}")
        log.warning("remote_model_download_failed", remote=name, model=model, state=state)
        raise RemoteModelError(f"Downloading {model} on {name} failed: {last.rstrip('.')}; once that is done, start "
                               "the job again (the bytes already there are kept).")
    if not remote_model_ready(install, model, engine):
        raise RemoteModelError(f"{model} is still incomplete on {name} after its download; run isengard models "
                               f"verify {model} there, then start the job again.")
    log.info("remote_model_downloaded", remote=name, model=model, seconds=round(time.monotonic() - started, 1))
    say(f"{model} is ready on {name}")
    return True


def _relay(lines: Any, model: str, name: str, say: Progress) -> tuple[str | None, str | None]:
    """Read the remote download's JSON lines: progress to ``say`` (every few seconds), its end state, its error."""
    state = error = None
    shown = 0.0
    for raw in lines:
        try:
            event = json.loads(raw)
        except ValueError:
            continue  # a stray non-JSON line (a warning printed by a library)
        if not isinstance(event, dict):
            continue
        if "state" in event and "event" not in event:
            state = str(event["state"])
        elif event.get("event") == "error":
            error = str(event.get("message") or "")
        elif event.get("event") == "progress" and time.monotonic() - shown >= PROGRESS_EVERY_S:
            shown = time.monotonic()
            done, total = int(event.get("step") or 0), int(event.get("total") or 0)
            percent = f"{100 * done / total:.0f}%" if total else f"{done / 2**20:.0f} MB"
            say(f"Downloading {model} on {name}: {percent}")
    return state, error


def model_for_spec(spec: dict[str, Any]) -> str | None:
    """The catalogue id of the base model a production job's spec needs on the remote (None: nothing to fetch,
    e.g. fast-test's tiny model, built on the remote itself)."""
    return CATALOGUE_IDS.get(str(spec.get("base_model_name") or ""))
