"""``ComfyUIEngine``: generation through the embedded ComfyUI, as the app's image engine (engines/interface.py).

The server is kept running by ``ComfyUISupervisor`` (``service``), in the app's process; ``generate``
runs in the worker process, finds the server through the volume's state file, checks everything a
run needs before submitting anything (base model files, LoRAs listed by ComfyUI, Advanced toggles'
nodes and models), then submits one workflow per image, follows it on the websocket, and saves each
image into the job folder with ComfyUI's own ``prompt`` chunk plus our ``parameters`` chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from engines import pngmeta
from engines.comfyui import paths
from engines.comfyui.fast_test_models import CHECKPOINT_NAME
from engines.comfyui.fast_test_models import MARKER as FAST_TEST_MODEL
from engines.comfyui.readiness import (
    FAST_TEST_KINDS,
    MODEL_FOLDERS,
    NODE_PACKS,
    TOGGLES,
    choose_models,
    default_toggle_options,
    toggle_readiness,
)
from engines.comfyui.workflow import ADVANCED_TOGGLES, ModelChoice
from engines.interface import (
    Availability,
    BaseModel,
    Emit,
    Engine,
    EngineService,
    EngineTraits,
    GenerationRequest,
    ShouldStop,
)

log = structlog.get_logger(__name__)

READY_WAIT_S = 300.0
PREVIEW_INTERVAL_S = 0.5


@dataclass(frozen=True)
class RunPlan:
    """A checked generation: the request with each toggle's model filled in, the base model files, the names
    ComfyUI gave the uploaded images, and the LoRAs that only touch the diffusion model."""

    request: GenerationRequest
    choice: ModelChoice
    uploads: dict[str, str]
    model_only: frozenset[str]


class GenerationFailed(Exception):
    """A generation could not run or ComfyUI failed it; the message says why and what to do."""


TEXT_ENCODER_KEYS = ("lora_te", "text_encoder", "te1.", "te2.", "lora_clip")


def lora_header(path: Path) -> dict | None:
    """A safetensors file's header (tensor names and ``__metadata__``), read without loading any tensor."""
    from isengard_desktop.base.safetensors_header import read_header

    try:
        return read_header(path)
    except (OSError, ValueError):
        return None


def touches_text_encoders(path: Path) -> bool:
    """Whether a LoRA file has text-encoder weights (unknown counts as yes: ComfyUI's loader then decides)."""
    header = lora_header(path)
    return header is None or any(marker in key for key in header for marker in TEXT_ENCODER_KEYS)


def trained_for_flux(path: Path) -> bool | None:
    """Whether a LoRA says it was trained on FLUX (the app's metadata, or FLUX-only key names); None: cannot tell."""
    header = lora_header(path) or {}
    base = str((header.get("__metadata__") or {}).get("isengard.base_model", "")).lower()
    if base:
        return "flux" in base
    if any(key.startswith(("transformer.transformer_blocks.", "lora_unet_double_blocks_")) for key in header):
        return True
    return None


def _fast_test() -> bool:
    """Whether this process runs in fast-test mode (the GUI's and the CLI's mode reaches workers the same way)."""
    from isengard_desktop.base.errors import IsengardError
    from isengard_desktop.base.mode import FAST_TEST, resolve_mode

    try:
        return resolve_mode() == FAST_TEST
    except IsengardError:  # a mistyped ISENGARD_MODE: the app refuses it at start; here, not fast-test
        return False


def saved_image_path(base: Path, image: dict) -> Path | None:
    """Where the embedded ComfyUI (``--base-directory base``) saved an ``output`` event's image, or None when the
    event names no file inside its output or temp folder."""
    kind = image.get("type", "output")
    if kind not in ("output", "temp") or not image.get("filename"):
        return None
    folder = (base / kind).resolve()
    path = (folder / image.get("subfolder", "") / image["filename"]).resolve()
    return path if path.is_relative_to(folder) and path.is_file() else None


# What a run without Advanced toggles looks in: the base model's folders and the LoRAs (one GET each; E7).
BASE_FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras")


def list_models(client, folders: tuple[str, ...] = MODEL_FOLDERS) -> dict[str, list[str]]:
    return {folder: client.models(folder) for folder in folders}


class ComfyUIEngine(Engine):
    name = "comfyui"
    # Generates after the settings' default (ComfyUI unless changed) and the built-in engine.
    traits = EngineTraits(title="ComfyUI (embedded)", kinds=("image",), rank=30, toggles=ADVANCED_TOGGLES,
                          upstream=paths.UPSTREAM, needs_worker_process=False)  # an HTTP client: runs in the app

    def availability(self) -> Availability:
        from engines.comfyui.remote import configured_url

        if configured_url(self.context.volume_root):  # a remote ComfyUI by URL needs no local install
            return Availability(True)
        located = self.locate()
        return Availability(False, located) if isinstance(located, str) else Availability(True)

    def base_model(self, fast_test: bool) -> BaseModel:
        """ComfyUI picks FLUX.1-dev's files (or a checkpoint) from its folders; fast-test builds its tiny one.
        Whether they are there is known only once the server answers (``generate`` checks before submitting)."""
        if fast_test:
            return BaseModel(FAST_TEST_MODEL, "tiny SD1.5-shaped checkpoint (fast-test)", True)
        return BaseModel("auto", "FLUX.1-dev", True)

    def service(self) -> EngineService:
        # The embedded ComfyUI, or one by URL when Settings → Engines names one (engines/comfyui/remote.py).
        from engines.comfyui.remote import SwitchingComfyUIService

        if self.context.volume_root is None:
            raise RuntimeError("The ComfyUI server needs a volume to run in; the engine was given none.")
        return SwitchingComfyUIService(self.context.volume_root, list(self.context.extra_model_dirs),
                                       self.context.lent.auth_header)

    def advanced_readiness(self) -> dict[str, Availability]:
        """Asks the running server (GET /object_info and the model folders); says so while it is not up."""
        from engines.comfyui.client import ComfyUIClient, ComfyUIError
        from engines.comfyui.supervisor import read_server

        availability = self.availability()
        from engines.comfyui.remote import client, configured_url
        from engines.interface import ServiceStatus

        root = self.context.volume_root
        remote_url = configured_url(root)
        status = ServiceStatus("ready", url=remote_url) if remote_url else read_server(root) if root else None
        if not availability.available or status is None or status.state != "ready":
            reason = availability.reason or f"ComfyUI is {status.state if status else 'stopped'}; the toggles are " \
                                            "checked when it is ready."
            out = {toggle: Availability(False, reason) for toggle in TOGGLES}
            if availability.available:  # say what the node-pack toggles will need, before the server is up
                out |= {toggle: Availability(False, f"{reason} It needs {needs}.")
                        for toggle, (_title, needs) in NODE_PACKS.items()}
            return out
        try:
            comfy = client(status.url, self.context.lent.auth_header) if remote_url else ComfyUIClient(status.url)
            return toggle_readiness(comfy.object_info(), list_models(comfy), fast_test=_fast_test() and not remote_url)
        except ComfyUIError as exc:
            return {toggle: Availability(False, str(exc)) for toggle in TOGGLES}

    def generate(self, request: GenerationRequest, emit: Emit, should_stop: ShouldStop) -> str:
        from engines.comfyui.client import ComfyUIClient, ComfyUIError
        from engines.comfyui.supervisor import wait_ready
        from engines.comfyui.workflow import build_workflow
        from isengard_desktop import __version__

        root = self.context.volume_root
        if root is None:
            raise GenerationFailed("The worker was given no volume (its job file names none); submit the job again.")
        from engines.comfyui import remote

        say = lambda text: emit({"event": "log", "level": "info", "message": text})  # noqa: E731
        remote_url = remote.configured_url(root)  # a ComfyUI by URL (Settings → Engines) instead of the embedded
        try:
            url = remote_url or wait_ready(root, READY_WAIT_S, should_stop, on_wait=say)
        except InterruptedError:
            return "cancelled"
        except RuntimeError as exc:
            raise GenerationFailed(str(exc)) from exc
        client = remote.client(url, self.context.lent.auth_header) if remote_url else ComfyUIClient(url)
        try:
            if remote_url:  # ComfyUI has no LoRA upload: copy them over SSH first
                remote.send_loras_or_explain(client, [Path(lora.path) for lora in request.loras],
                                             self.context.lent.file_copier, say)
            if request.base_model == FAST_TEST_MODEL and remote_url:  # a remote ComfyUI uses its own models
                request = GenerationRequest.from_dict({**request.to_dict(), "base_model": "auto"})
            elif request.base_model == FAST_TEST_MODEL:
                self._ensure_fast_test_models(root, say, request, self.locate())
            plan = self._plan(client, request)
            log.info("comfyui_generation", url=url, models=plan.choice.__dict__, loras=len(request.loras),
                     toggles=sorted(plan.request.advanced))
            connection = client.connect()
            try:
                for index in range(request.batch_count):
                    if should_stop():
                        return "cancelled"
                    workflow = build_workflow(plan.request, plan.choice, index=index, uploads=plan.uploads,
                                              model_only_loras=plan.model_only)
                    state = self._one_image(client, connection, plan.request, workflow, plan.choice, index, emit,
                                            should_stop, __version__, None if remote_url else paths.base_dir(root))
                    if state != "succeeded":
                        return state
            finally:
                # Say goodbye without waiting for ComfyUI's answer: the job is done, and after a prompt ComfyUI may
                # hold its event loop ~0.3 s collecting garbage (E7); a polite close would wait that out.
                connection.close(timeout=0)
        except ComfyUIError as exc:
            raise GenerationFailed(str(exc)) from exc
        return "succeeded"

    @staticmethod
    def _ensure_fast_test_models(root: Path, say, request: GenerationRequest,
                                 located: tuple[Path, Path] | str) -> None:
        """Fast-test mode: ComfyUI's tiny checkpoint and the chosen toggles' tiny models in the volume's model
        folders, each built the first time it is needed (with ComfyUI's python, in this worker's child)."""
        from engines.comfyui import fast_test_models

        kinds = ("checkpoint", *(FAST_TEST_KINDS[t] for t in request.advanced if t in FAST_TEST_KINDS))
        missing = [kind for kind in kinds if not (paths.models_dir(root) / fast_test_models.FILES[kind]).is_file()]
        if not missing:
            return
        if isinstance(located, str):
            raise GenerationFailed(located)
        say("Building ComfyUI's tiny fast-test models (once; the checkpoint takes about a minute)…")
        try:
            fast_test_models.ensure(paths.models_dir(root), *located, tuple(missing))
        except fast_test_models.BuildFailed as exc:
            raise GenerationFailed(f"{exc}; see the job's log, or generate with the built-in engine.") from exc
        log.info("comfyui_fast_test_models_built", kinds=missing)

    def _plan(self, client, request: GenerationRequest) -> RunPlan:
        """Everything checked before anything is submitted: base model files, LoRAs, toggles, uploaded images."""
        models = list_models(client, MODEL_FOLDERS if request.advanced else BASE_FOLDERS)
        fast_test = request.base_model == FAST_TEST_MODEL  # fast-test mode: only the tiny checkpoint it built
        choice = choose_models(models, CHECKPOINT_NAME if fast_test else request.base_model)
        if isinstance(choice, str):
            raise GenerationFailed(choice)
        for lora in request.loras:
            if Path(lora.path).name not in models["loras"]:
                raise GenerationFailed(f"ComfyUI does not list the LoRA {Path(lora.path).name}; it should be in "
                                       "the volume's models/loras folder — train the character again.")
            if fast_test and trained_for_flux(Path(lora.path)):
                raise GenerationFailed(f"{lora.name or Path(lora.path).stem}'s LoRA was trained on the tiny FLUX, but "
                                       "in fast-test mode ComfyUI runs a tiny SD1.5-shaped model (ComfyUI cannot run "
                                       "a tiny FLUX); generate with the built-in engine to use it, or without the "
                                       "LoRA.")
            if choice.resolved_family != "flux" and trained_for_flux(Path(lora.path)):
                raise GenerationFailed(f"{lora.name or Path(lora.path).stem}'s LoRA was trained on FLUX, but ComfyUI's "
                                       f"base model is {choice.name}, which is not FLUX; add FLUX.1-dev's files to "
                                       "the volume's models folders, or generate without the LoRA.")
        advanced = dict(request.advanced)
        if advanced:
            readiness = toggle_readiness(client.object_info(), models, fast_test=fast_test)
            for toggle in advanced:
                state = readiness.get(toggle, Availability(False, f"{toggle} is unknown."))
                if not state.available:
                    raise GenerationFailed(state.reason)
                advanced[toggle] = default_toggle_options(toggle, models, fast_test) | advanced[toggle]
        uploads = {}
        for toggle, what in (("controlnet", "a control image"), ("ipadapter", "a reference face")):
            if toggle in advanced:
                image = advanced[toggle].get("image")
                if not image or not Path(image).is_file():
                    raise GenerationFailed(f"{toggle.capitalize()} needs {what}; choose one next to the toggle.")
                uploads[toggle] = client.upload_image(Path(image))
        name = request.base_model_name if request.base_model_name != "auto" else choice.name
        effective = GenerationRequest.from_dict({**request.to_dict(), "advanced": advanced, "base_model_name": name})
        model_only = frozenset(Path(lora.path).name for lora in request.loras
                               if not touches_text_encoders(Path(lora.path)))
        return RunPlan(effective, choice, uploads, model_only)

    def _one_image(self, client, connection, request: GenerationRequest, workflow: dict, choice, index: int,
                   emit: Emit, should_stop: ShouldStop, version: str, local_base: Path | None) -> str:
        """Submit one image's workflow, follow it, and save what it made; returns the final state.

        The embedded server's images are read where it saved them (``local_base``, this disk), then removed there
        once the app's copy is written: after each prompt of more than 10 s ComfyUI collects its garbage, holding
        its HTTP loop ~0.3 s, and a GET /view made then waits for it (E7); and the volume would hold every image
        twice. A ComfyUI by URL is asked over HTTP and keeps its own."""
        from isengard_desktop.base import atomic

        seed = request.seed + index
        started = time.perf_counter()
        prompt_id = client.submit(workflow)
        log.info("comfyui_prompt_submitted", prompt_id=prompt_id, index=index, seed=seed)
        out = Path(request.output_dir)
        last_preview = 0.0
        outputs: list[dict] = []

        def on_event(event: dict) -> None:
            nonlocal last_preview
            kind = event["event"]
            if kind == "progress" and event["total"]:
                # Only the sampler's steps count (an upscaler reports its own tiles).
                emit({"event": "progress", "step": index * request.steps + min(event["step"], request.steps),
                      "total": request.steps * request.batch_count, "index": index, "count": request.batch_count})
            elif kind == "preview" and time.monotonic() - last_preview > PREVIEW_INTERVAL_S:
                last_preview = time.monotonic()
                path = out / "preview.jpg"
                atomic.write_bytes(path, event["data"], durable=False)  # replaced within a second
                emit({"event": "preview", "index": index, "path": str(path)})
            elif kind == "output":
                outputs.extend(event["images"])

        finished = client.follow(connection, prompt_id, on_event, should_stop)
        if finished["state"] == "cancelled":
            log.info("comfyui_prompt_cancelled", prompt_id=prompt_id)
            return "cancelled"
        if finished["state"] == "failed":
            raise GenerationFailed(finished["message"])
        parameters = pngmeta.a1111_parameters(request, seed, self.name, version,
                                              distilled_guidance=choice.resolved_family == "flux")
        for number, image in enumerate(outputs):
            saved = saved_image_path(local_base, image) if local_base is not None else None
            data = saved.read_bytes() if saved is not None else client.view(
                image["filename"], image.get("subfolder", ""), image.get("type", "output"))
            path = out / f"image_{index:02d}_{seed}{'_' + str(number) if number else ''}.png"
            atomic.write_bytes(path, pngmeta.add_chunks(data, {"parameters": parameters}))
            if saved is not None:  # the embedded server's copy: the volume keeps each image once, the app's
                saved.unlink(missing_ok=True)
            log.info("image_saved", path=str(path), seed=seed, prompt_id=prompt_id,
                     seconds=round(time.perf_counter() - started, 3))
            emit({"event": "image", "index": index, "path": str(path), "seed": seed, "parameters": parameters})
        if not outputs:
            raise GenerationFailed("ComfyUI finished the workflow but saved no image; see logs/comfyui.log.")
        return "succeeded"
