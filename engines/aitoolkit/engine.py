"""``AIToolkitEngine``: upstream AI-Toolkit (``python run.py job.json``) run from the worker subprocess.

Where it lives: ``ISENGARD_AITOOLKIT_DIR`` (a checkout at the pinned commit) and
``ISENGARD_AITOOLKIT_PYTHON`` (its own environment's python; default ``DIR/venv/bin/python``), else the
install in its engine folder of the volume (``UPSTREAM.locate``, from the context the app gives it).
Cancel sends SIGINT: at the pinned commit neither SIGINT nor the UI's stop flag saves on the way out,
so a cancel loses the steps since the last checkpoint, and the engine says how many. Resume reruns
the same config, and AI-Toolkit continues from its newest checkpoint and ``optimizer.pt``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

import structlog

from engines.aitoolkit import progress as parse
from engines.aitoolkit.config import build_config, plan_run
from engines.flux_base import flux_base_model, resolve
from engines.interface import (
    Availability,
    BaseModel,
    Emit,
    Engine,
    EngineTraits,
    ShouldStop,
    TrainingSpec,
    Upstream,
    lora_metadata,
)

log = structlog.get_logger(__name__)

UPSTREAM = Upstream(
    "ISENGARD_AITOOLKIT", "run.py", ("torch", "diffusers"), "AI-Toolkit", ", or use the built-in diffusers engine",
    skip_requirements=("git+", "setuptools", "torchao"),
    extra_packages=("setuptools>=77.0.3,<81", "diffusers==0.39.*", "torchao==0.10.0"),
    no_deps_packages=("torchaudio==2.11.0",), remove_packages=("triton",), bitsandbytes=True,
)

STOP_TIMEOUT_S = 60.0
FAILURES = (  # (text in AI-Toolkit's output, what to tell the person)
    ("CUDA out of memory", "The GPU ran out of memory; choose the Quick or Balanced preset (low-VRAM mode) or a "
                           "smaller resolution."),
    ("OutOfMemoryError", "The GPU ran out of memory; choose the Quick or Balanced preset (low-VRAM mode) or a "
                         "smaller resolution."),
    ("GatedRepoError", "The base model is gated on Hugging Face: accept its licence there and add your token in "
                       "Settings."),
    ("401 Client Error", "Hugging Face refused the download (not authorised): add your token in Settings."),
    ("Repository Not Found", "The base model was not found; check the base model folder or name in Settings."),
    ("No space left on device", "The disk is full: free some space or move the volume, then resume."),
    ("ModuleNotFoundError", "AI-Toolkit's environment is missing a Python package: reinstall the engine."),
)


def failure_message(tail: list[str], returncode: int) -> str:
    text = "\n".join(tail)
    for needle, message in FAILURES:
        if needle in text:
            return message
    last = next((line for line in reversed(tail) if line.strip()), "")
    return f"AI-Toolkit stopped with an error (exit code {returncode}): {last.strip()[:300]}"


def write_dataset(spec: TrainingSpec, folder: Path) -> None:
    """Images with their captions as AI-Toolkit reads them: ``0001.jpg`` beside ``0001.txt``."""
    from isengard_desktop.base import atomic

    folder.mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(spec.dataset):
        source = Path(item.path)
        target = folder / f"{index:04d}{source.suffix.lower()}"
        if not target.exists():
            atomic.copy_file(source, target)
        atomic.write_text(target.with_suffix(".txt"), item.caption)


class AIToolkitEngine(Engine):
    name = "aitoolkit"
    # The production trainer; fast-test mode prefers the built-in engine (no second environment to start).
    traits = EngineTraits(title="AI-Toolkit", kinds=("training",), rank=10, auto_in_fast_test=False,
                          upstream=UPSTREAM)

    def availability(self) -> Availability:
        found = self.locate()
        return Availability(False, found) if isinstance(found, str) else Availability(True)

    def base_model(self, fast_test: bool) -> BaseModel:
        return flux_base_model(self.context, fast_test)

    def train(self, spec: TrainingSpec, emit: Emit, should_stop: ShouldStop) -> str:
        found = self.locate()
        if isinstance(found, str):
            raise RuntimeError(found)
        checkout, python = found
        from dataclasses import replace

        spec = replace(spec, base_model=resolve(spec.base_model, self.context))
        from isengard_desktop.base import atomic
        from isengard_desktop.base.mode import detect_gpu

        output = Path(spec.output_dir)
        device = "cpu" if spec.device == "cpu" or not detect_gpu().present else "cuda:0"
        training_folder = output / "aitoolkit"
        write_dataset(spec, output / "aitoolkit_dataset")
        config_path = output / "aitoolkit_job.json"
        import json

        settings = None
        if device.startswith("cuda"):  # the memory plan decides quantize/quantize_te/low_vram, or refuses
            plan = plan_run(spec)
            if plan is not None and not plan.ok:
                raise RuntimeError(plan.reason)
            if plan is not None:
                settings = plan.settings
                if plan.verdict == "adjusted":
                    emit({"event": "log", "level": "warning", "message": plan.reason})
        config = build_config(spec, output / "aitoolkit_dataset", training_folder, device, settings)
        atomic.write_text(config_path, json.dumps(config, indent=2))
        run = _Run(spec, emit, training_folder / spec.lora_name)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log.info("aitoolkit_started", checkout=str(checkout), python=str(python), device=device)
        proc = subprocess.Popen(
            [str(python), "run.py", str(config_path)], cwd=checkout, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # The worker ignores SIGINT (the CLI turns Ctrl+C into a stop request); AI-Toolkit must not.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        readers = [threading.Thread(target=run.read, args=(stream,), daemon=True)
                   for stream in (proc.stdout, proc.stderr)]
        for reader in readers:
            reader.start()
        stopped = False
        while proc.poll() is None:
            run.collect_samples()
            if not stopped and (should_stop() or run.nan_step is not None):  # a NaN loss only wastes the GPU
                stopped = True
                proc.send_signal(signal.SIGINT)
                threading.Timer(STOP_TIMEOUT_S, lambda: proc.poll() is None and proc.kill()).start()
            time.sleep(0.3)
        for reader in readers:
            reader.join()
        run.collect_samples()
        if run.nan_step is not None:
            raise RuntimeError(f"The loss became NaN at step {run.nan_step}; lower the learning rate "
                               f"({spec.learning_rate}) and train again.")
        if stopped:
            # AI-Toolkit prints a step's progress after saving it: the checkpoint can be ahead of the last bar seen.
            stopped_at = max(run.step, run.checkpoint_step)
            lost = stopped_at - run.checkpoint_step
            emit({"event": "log", "level": "warning",
                  "message": f"Stopped at step {stopped_at}; the last checkpoint is step {run.checkpoint_step}, so "
                             f"{lost} step(s) will be trained again when you resume."})
            return "cancelled"
        if proc.returncode != 0:
            raise RuntimeError(failure_message(list(run.tail), proc.returncode))
        final = training_folder / spec.lora_name / f"{spec.lora_name}.safetensors"
        path = output / f"{spec.lora_name}.safetensors"
        _save_with_metadata(final, path, lora_metadata(spec, "aitoolkit", _version(checkout), _app_version()))
        emit({"event": "progress", "step": spec.steps, "total": spec.steps, "loss": run.loss, "lr": run.lr,
              "it_per_s": run.it_per_s, "eta_s": 0.0})
        emit({"event": "artifact", "kind": "lora", "path": str(path)})
        return "succeeded"


class _Run:
    """What the reader threads learn from AI-Toolkit's output."""

    def __init__(self, spec: TrainingSpec, emit: Emit, folder: Path) -> None:
        self.spec, self.emit, self.folder = spec, emit, folder
        self.tail: deque[str] = deque(maxlen=60)
        self.step = self.checkpoint_step = 0
        self.loss = self.lr = None
        self.it_per_s = 0.0
        self.nan_step: int | None = None
        self._samples: set[Path] = set()
        self._lock = threading.Lock()

    def read(self, stream) -> None:
        for raw in iter(lambda: stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096), b""):
            for line in parse.split_redraws(raw.decode("utf-8", "replace")):
                self.handle(line)

    def handle(self, line: str) -> None:
        with self._lock:
            self.tail.append(line)
            bar = parse.parse_bar(line, self.spec.lora_name)
            if bar is not None:
                if bar.loss is not None and bar.loss != bar.loss:  # NaN: the engine stops the run
                    self.nan_step = self.nan_step or bar.step
                    return
                if bar.step != self.step or bar.loss != self.loss:
                    self.step, self.loss, self.lr, self.it_per_s = bar.step, bar.loss, bar.lr, bar.it_per_s
                    self.emit({"event": "progress", "step": bar.step, "total": bar.total, "loss": bar.loss,
                               "lr": bar.lr, "it_per_s": round(bar.it_per_s, 4), "eta_s": bar.eta_s})
                return
            log.info("aitoolkit_output", line=line[:500])
            saved = parse.parse_saved(line)
            if saved and not saved.endswith(f"/{self.spec.lora_name}.safetensors"):
                step = int(Path(saved).stem.rsplit("_", 1)[-1])
                self.checkpoint_step = step
                self.emit({"event": "checkpoint", "step": step, "path": saved})

    def collect_samples(self) -> None:
        folder = self.folder / "samples"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.jpg")):
            if path in self._samples:
                continue
            self._samples.add(path)
            try:  # samples/{ms}__{step:09d}_{i}.jpg
                step = int(path.stem.split("__", 1)[1].split("_", 1)[0])
                index = int(path.stem.rsplit("_", 1)[1])
            except (IndexError, ValueError):
                continue
            prompts = self.spec.sample_prompts
            self.emit({"event": "sample", "step": step, "path": str(path),
                       "prompt": prompts[index] if index < len(prompts) else ""})


def _save_with_metadata(source: Path, target: Path, metadata: dict[str, str]) -> None:
    """Copy AI-Toolkit's LoRA with the app's metadata added to what AI-Toolkit wrote.

    Only the safetensors header changes (tensor offsets are relative to the data that follows it), so
    this rewrites the header and copies the data as it is, without loading torch into the worker.
    """
    from isengard_desktop.base import atomic, safetensors_header

    header, tensors = safetensors_header.split(source.read_bytes())
    header["__metadata__"] = {**header.get("__metadata__", {}), **metadata}
    atomic.write_bytes(target, safetensors_header.join(header, tensors))
    log.info("lora_saved", path=str(target), tensors=len(header) - 1)


def _version(checkout: Path) -> str:
    head = checkout / ".isengard-commit"
    return "ai-toolkit " + (head.read_text().strip() if head.exists() else "unknown commit")


def _app_version() -> str:
    from isengard_desktop import __version__

    return __version__
