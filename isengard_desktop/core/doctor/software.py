"""The doctor's checks of what is installed: engines against their pins, base models per engine, the Hugging Face
token, and ComfyUI listening only on the loopback interface while it runs.

The model manager (core/models) is imported lazily: a build without it still runs every other check.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import psutil

from isengard_desktop.core.doctor import FAIL, NOTHING_TO_DO, OK, WARN, Check, Facts
from isengard_desktop.core.units import human_bytes

FALLBACK_GATED_REPO = "black-forest-labs/FLUX.1-dev"


def engine_checks(facts: Facts) -> list[Check]:
    from isengard_desktop.core.engines_status import pins, status

    checks = []
    for name in pins()["engines"]:
        state = status(name, facts.ctx.volume.root)
        title = f"Engine {name}"
        action = f"install_engine:{name}"
        if not state.installed:
            if facts.fast_test:
                checks.append(Check(title, OK, "Not installed; fast-test mode uses the built-in engine.",
                                    "Install it from Settings → Engines when you move to a GPU machine.", action))
            else:
                checks.append(Check(title, WARN, f"Not installed (pinned at {state.pinned_commit}).",
                                    "Install it from Settings → Engines (needs internet; several GB), or use the "
                                    "built-in engine.", action))
        elif not state.environment_ok:
            checks.append(Check(title, FAIL, state.detail[:1].upper() + state.detail[1:] + ".",
                                "Reinstall it from Settings → Engines; the previous install stays until the new one "
                                "works.", action))
        elif not state.matches_pin:
            checks.append(Check(title, WARN, state.detail[:1].upper() + state.detail[1:] + ".",
                                "Reinstall it from Settings → Engines to move it to the pinned commit.", action))
        else:
            checks.append(Check(title, OK, f"Installed at the pinned commit {state.pinned_commit}; its environment "
                                           "starts.", NOTHING_TO_DO))
    return checks


def _state_line(engine, status) -> str:
    if status.state in ("missing", "partial"):
        return f"{engine}: {status.state} ({human_bytes(status.missing_bytes)} to download)"
    return f"{engine}: {status.state}" + ("" if status.ready else " (not where the engine reads it)")


def model_checks(facts: Facts) -> list[Check]:
    try:
        from isengard_desktop.core.models import inventory
    except ImportError:
        return [Check("Base models", WARN, "The model manager is not available in this build, so the base models "
                                           "cannot be checked.", "Update the app; until then put the models in the "
                                           "volume's models/ folder by hand.")]
    statuses = inventory.status(facts.ctx.volume, [Path(p) for p in facts.ctx.settings.extra_model_dirs])
    wanted_engines = [facts.ctx.settings.default_training_engine, facts.ctx.settings.default_image_engine]
    checks = []
    for model in statuses:
        if model.model.role != "base":  # the face embedder, the captioner: optional helpers, never a base model
            checks.append(_helper_model_check(model, facts.fast_test))
            continue
        engines = model.engines
        detail = f"{model.model.title}: " + ", ".join(_state_line(name, s) for name, s in engines.items()) + "."
        ready = [name for name, s in engines.items() if s.ready]
        unverified = [name for name, s in engines.items() if s.ready and s.state != "verified"]
        missing = [name for name in wanted_engines if name in engines and not engines[name].ready]
        target = missing[0] if missing else next(iter(engines), "")
        download = f"download_model:{model.model.id}:{target}"
        if ready and not missing:
            if unverified:
                checks.append(Check(f"Base model {model.model.title}", WARN, detail,
                                    "Verify the files in Settings → Models (reads each file once to check its sha256).",
                                    f"verify_model:{model.model.id}"))
            else:
                checks.append(Check(f"Base model {model.model.title}", OK, detail, NOTHING_TO_DO))
        elif facts.fast_test:
            checks.append(Check(f"Base model {model.model.title}", OK,
                                detail + " Fast-test mode uses the tiny built-in model instead.",
                                "Download it from Settings → Models when you move to a GPU machine.", download))
        else:
            checks.append(Check(f"Base model {model.model.title}", WARN if ready else FAIL, detail,
                                f"Download it for {target} from Settings → Models (it resumes if stopped), or add a "
                                "folder that already has it in Settings → Models.", download))
    if not checks:
        checks.append(Check("Base models", WARN, "The model catalogue lists no model.",
                            "Reinstall the app: its catalogue of base models is missing."))
    return checks


def _helper_model_check(model, fast_test: bool) -> Check:
    """A model that serves a dataset tool (Check photos' face embedder, Caption all's captioner): optional, so a
    missing one warns (the tool says it is not ready) and never fails the doctor."""
    title = model.model.title
    ready = any(status.ready for status in model.engines.values())
    if ready:
        return Check(title, OK, f"{title} is downloaded.", NOTHING_TO_DO)
    if fast_test:
        return Check(title, OK, f"{title} is not downloaded; fast-test mode uses a tiny built-in model instead.",
                     "Download it from Settings → Models when you move to a GPU machine.",
                     f"download_model:{model.model.id}:{next(iter(model.engines), '')}")
    return Check(title, WARN, f"{title} is not downloaded: {model.model.description}",
                 f"Download it from Settings → Models (optional; `isengard models download {model.model.id}`).",
                 f"download_model:{model.model.id}:{next(iter(model.engines), '')}")


def _gated_repos() -> list[str]:
    try:
        from isengard_desktop.base import catalogue
    except ImportError:
        return [FALLBACK_GATED_REPO]
    try:
        return sorted({m.repo for m in catalogue.load() if m.gated})
    except Exception:  # the model check reports a broken catalogue
        return [FALLBACK_GATED_REPO]


def token_check(facts: Facts) -> list[Check]:
    from isengard_desktop.core.secrets import get_hf_token

    repos = _gated_repos()
    token = get_hf_token()
    if not token:
        status = OK if facts.fast_test else WARN
        return [Check("Hugging Face token", status,
                      f"No token is stored; {', '.join(repos) or 'gated repositories'} cannot be downloaded without "
                      "one.",
                      "Create a read token at https://huggingface.co/settings/tokens, accept the model's licence on "
                      "its page, and paste the token in Settings → General.", "set_token")]
    if not facts.online:
        return [Check("Hugging Face token", OK, "A token is stored (not checked with the hub: offline run).",
                      NOTHING_TO_DO)]
    try:
        from isengard_desktop.core.models.hub import HubAccessError, check_access
    except ImportError:
        return [Check("Hugging Face token", WARN, "A token is stored; the model manager that checks it is not "
                                                  "available in this build.", "Update the app.")]
    problems = []
    for repo in repos:
        try:
            check_access(repo, token)
        except HubAccessError as exc:
            problems.append(exc)
    if not problems:
        return [Check("Hugging Face token", OK, f"A token is stored and may download {', '.join(repos)}.",
                      NOTHING_TO_DO)]
    first = problems[0]
    if first.reason == "offline":
        return [Check("Hugging Face token", WARN, str(first),
                      "Check the internet connection and run the checks again.")]
    if first.reason in ("no_token", "bad_token"):
        fix, action = f"Make a new read token at {first.fix_url} and paste it in Settings → General.", "set_token"
    elif first.reason == "pending":
        fix, action = (f"Wait for the model's authors to approve your request ({first.fix_url}), then run the "
                       "checks again."), None
    else:
        fix, action = (f"Open {first.fix_url}, accept the model's licence with the account of your token, then run "
                       "the checks again."), None
    return [Check("Hugging Face token", FAIL, " ".join(str(p) for p in problems), fix, action)]


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def comfyui_check(facts: Facts) -> list[Check]:
    """ComfyUI has no authentication: while it runs it must listen on 127.0.0.1 only (SPEC §8)."""
    from engines.comfyui import paths  # where the supervisor writes the running server down (pid, port)

    state_file = paths.state_file(facts.ctx.volume.root)
    name = "ComfyUI network"
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [Check(name, OK, "ComfyUI is not running.", NOTHING_TO_DO)]
    pid = data.get("pid")
    if not pid or not psutil.pid_exists(int(pid)):
        return [Check(name, OK, "ComfyUI is not running.", NOTHING_TO_DO)]
    try:
        process = psutil.Process(int(pid))
        sockets = process.net_connections(kind="inet")
    except psutil.AccessDenied:
        return [Check(name, WARN, f"ComfyUI runs (pid {pid}) under another user; its sockets cannot be read.",
                      "Run the checks as the user that started ComfyUI.")]
    except psutil.NoSuchProcess:
        return [Check(name, OK, "ComfyUI is not running.", NOTHING_TO_DO)]
    listening = [s.laddr for s in sockets if s.status == psutil.CONN_LISTEN and s.laddr]
    exposed = [f"{a.ip}:{a.port}" for a in listening if not _loopback(a.ip)]
    if exposed:
        return [Check(name, FAIL, f"ComfyUI (pid {pid}) listens on {', '.join(exposed)}: other machines on the network "
                                  "can send it prompts, upload files and read its outputs (it has no password).",
                      "Stop ComfyUI (Settings → Engines, or quit the app); the app starts it again on 127.0.0.1 only. "
                      "If you started it yourself, restart it without --listen 0.0.0.0.", "stop_engine:comfyui")]
    if not listening:
        return [Check(name, OK, f"ComfyUI (pid {pid}) runs and is not listening yet.", NOTHING_TO_DO)]
    where = ", ".join(f"{a.ip}:{a.port}" for a in listening)
    return [Check(name, OK, f"ComfyUI (pid {pid}) listens on {where} only: this machine alone can reach it.",
                  NOTHING_TO_DO)]
