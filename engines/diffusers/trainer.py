"""The FLUX LoRA training run: prepare, loop, checkpoint, sample, save the final LoRA.

Determinism is designed in, so that a cancelled run resumed from its checkpoint ends bitwise
identical (on the CPU) to a run never interrupted: the batch of step ``s`` and every random draw of
that step (the latent sample, the noise, the noise level) come from a generator seeded from
(seed, s) alone, and a checkpoint restores the LoRA, the optimizer and all global RNG states.
"""

from __future__ import annotations

import importlib.metadata
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog
import torch

from engines.diffusers import checkpoint, lora, models
from engines.diffusers.dataset import BatchOrder, Sample, derive_seed, plan_samples
from engines.diffusers.errors import TrainingError
from engines.diffusers.flow import Conditioning, FlowMatching
from engines.diffusers.latents import LatentDist, cache_latents
from engines.diffusers.preflight import memory_plan, preflight, save_plan
from engines.diffusers.sampling import Sampler
from engines.diffusers.text import TextEmbedding, encode_texts
from engines.interface import Emit, ShouldStop, TrainingSpec, lora_metadata
from isengard_desktop.base.memory_plan import ModelSizes

log = structlog.get_logger(__name__)

MAX_GRAD_NORM = 1.0  # diffusers' script default


@dataclass
class Run:
    """Everything one run holds while it trains."""

    spec: TrainingSpec
    emit: Emit
    runtime: models.Runtime
    samples: list[Sample]
    latents: list[LatentDist]
    texts: dict[str, TextEmbedding]
    order: BatchOrder
    flow: FlowMatching
    transformer: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sampler: Sampler | None
    params: list[torch.nn.Parameter]  # the LoRA's, which the optimizer updates and the step clips
    start_step: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output_dir)


def train(spec: TrainingSpec, emit: Emit, should_stop: ShouldStop) -> str:
    """Run ``spec`` to the end or until ``should_stop()``; returns "succeeded" or "cancelled"."""
    log.info(
        "training_started",
        steps=spec.steps,
        rank=spec.rank,
        resolutions=spec.resolutions,
        output_dir=spec.output_dir,
        resume=spec.resume,
    )
    setup_started = time.perf_counter()
    try:
        run = prepare(spec, emit, should_stop)
    except _StoppedDuringSetup:
        # Nothing was trained yet, so there is nothing to save; a resume starts the set-up again.
        log.info("training_cancelled", step=0, during="setup")
        return "cancelled"
    # The set-up's length, and the moment the loop starts (bench/train_overhead.py reads this line's timestamp).
    log.info("training_loop_started", step=run.start_step, setup_seconds=round(time.perf_counter() - setup_started, 2))
    for step in range(run.start_step, spec.steps):
        if should_stop():
            save_checkpoint(run, step)
            log.info("training_cancelled", step=step)
            return "cancelled"
        loss = train_step(run, step)
        report_progress(run, step + 1, loss)
        if spec.sample_every > 0 and (step + 1) % spec.sample_every == 0:
            make_samples(run, step + 1)
        if spec.save_every > 0 and (step + 1) % spec.save_every == 0:
            save_checkpoint(run, step + 1)
    make_samples(run, spec.steps, only_missing=True)
    path = save_final_lora(run)
    emit({"event": "artifact", "kind": "lora", "path": str(path)})
    log.info("training_finished", steps=spec.steps, path=str(path))
    return "succeeded"


class _StoppedDuringSetup(Exception):
    """Cancel was pressed while the run was still loading models or caching."""


def prepare(spec: TrainingSpec, emit: Emit, should_stop: ShouldStop = lambda: False) -> Run:
    """Check the spec, cache text and latents, load the transformer with a LoRA, restore a checkpoint.

    On FLUX.1-dev each phase can take minutes, so a stop request is honoured between phases.
    """

    def checkpoint_stop() -> None:
        if should_stop():
            raise _StoppedDuringSetup

    _check_name(spec.lora_name)
    problems = preflight(spec)
    if problems:
        raise TrainingError(" ".join(problems))
    base = Path(spec.base_model)
    runtime = models.resolve_runtime(spec.device, spec.num_threads, ModelSizes.from_folder(base).transformer)
    spec, settings = _plan_memory(spec, runtime, emit)
    output = Path(spec.output_dir)
    samples, skipped = plan_samples(spec.dataset, spec.resolutions)
    for sentence in skipped:
        log.warning("image_skipped", reason=sentence)
        emit({"event": "log", "level": "warning", "message": sentence})
    resume_from = checkpoint.latest_checkpoint(output / "checkpoints")
    if resume_from is not None and not spec.resume:
        raise TrainingError(
            f"The folder {output} already holds checkpoints of an earlier run; resume that run "
            "or train into a new folder."
        )
    models.quiet_progress_bars()
    cache = output / "cache"
    checkpoint_stop()
    texts = encode_texts(
        base,
        [s.caption for s in samples] + list(spec.sample_prompts),
        cache / "text.safetensors",
        runtime.device,
        runtime.dtype,
    )
    checkpoint_stop()
    vae = models.load_vae(base, runtime)
    latents = cache_latents(samples, vae, cache, runtime.device)
    checkpoint_stop()
    flow = FlowMatching(models.load_scheduler(base), vae.config.shift_factor or 0.0, vae.config.scaling_factor)
    transformer = models.load_transformer(base, runtime, settings["transformer"])
    checkpoint_stop()
    # The LoRA's initial weights come from the run's seed, whatever ran before in this process.
    torch.manual_seed(derive_seed(spec.seed, "lora-init"))
    params = lora.add_lora(transformer, spec.rank, spec.alpha)
    optimizer = models.make_optimizer(params, spec.learning_rate, runtime, settings["optimizer"])
    sampler = None
    if spec.sample_prompts:
        sampler = Sampler(base, transformer, vae, output / "samples", spec, texts)
    else:
        del vae
    run = Run(
        spec,
        emit,
        runtime,
        samples,
        latents,
        texts,
        BatchOrder(samples, spec.batch_size, spec.seed),
        flow,
        transformer,
        optimizer,
        sampler,
        params,
    )
    if resume_from is not None:
        restore(run, resume_from)
    elif spec.resume:
        log.info("training_resume_without_checkpoint", output_dir=str(output))
        emit({"event": "log", "level": "info", "message": "No checkpoint to resume from: training from the start."})
    return run


def _plan_memory(spec: TrainingSpec, runtime: models.Runtime, emit: Emit) -> tuple[TrainingSpec, dict]:
    """On a GPU: the memory plan decides (as configured, adjusted with named settings, or refused before
    any model loads); the spec comes back with the plan's resolutions. On the CPU: fp32, as configured."""
    if runtime.device.type != "cuda":
        return spec, {"transformer": "bf16", "optimizer": "adamw"}
    card = models.cuda_card(runtime)
    plan = memory_plan(spec, card, models.has_bitsandbytes())
    log.info("memory_planned", verdict=plan.verdict, peak_gb=round(plan.peak_gb, 2), settings=plan.settings,
             card=card.to_json())
    if not plan.ok:
        raise TrainingError(plan.reason)
    if plan.verdict == "adjusted":
        _warn(emit, plan.reason)
    save_plan(spec, plan)
    return replace(spec, resolutions=list(plan.settings["resolutions"])), plan.settings


def restore(run: Run, folder: Path) -> None:
    saved = checkpoint.load_checkpoint(folder)
    if saved.step > run.spec.steps:
        raise TrainingError(
            f"The checkpoint {folder} is at step {saved.step}, past this run's {run.spec.steps} steps; "
            f"resume with at least {saved.step} steps."
        )
    expected = run.order.state(saved.step)
    if saved.state.get("data_order") != expected:
        raise TrainingError(
            f"The checkpoint {folder} was made with another dataset, batch size or seed; "
            "resume with the settings of that run or train into a new folder."
        )
    lora.load_lora_state(run.transformer, {k: v.to(run.runtime.device) for k, v in saved.lora.items()})
    run.optimizer.load_state_dict(saved.optimizer)
    checkpoint.restore_rng_state(saved.state["rng"])
    run.start_step = saved.step
    log.info("training_resumed", step=saved.step, checkpoint=str(folder))
    run.emit({"event": "log", "level": "info", "message": f"Resumed from step {saved.step} ({folder.name})."})


def train_step(run: Run, step: int) -> float:
    """One optimizer step on the batch of ``step`` (0-based); returns the loss."""
    if not run.timings:
        run.timings["started"] = time.perf_counter()
    members = run.order.batch(step)
    generator = torch.Generator(device="cpu").manual_seed(derive_seed(run.spec.seed, "step", step))
    device, dtype = run.runtime.device, run.runtime.dtype
    # Draws happen on the CPU in a fixed order (latents, noise, sigmas) so they do not depend on the device.
    raw = [
        run.latents[i].mean + run.latents[i].std * torch.randn(run.latents[i].mean.shape, generator=generator)
        for i in members
    ]
    latents = run.flow.scale_latents(torch.stack(raw)).to(device)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    sigmas, timesteps = run.flow.sample_sigmas(len(members), generator)
    loss = run.flow.loss(run.transformer, latents, noise, sigmas, timesteps, _conditioning(run, members), dtype)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.params, MAX_GRAD_NORM)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    value = float(loss.detach().item())
    if value != value:  # NaN: the run has diverged; going on would only waste the GPU
        raise TrainingError(
            f"The loss became NaN at step {step + 1}; lower the learning rate "
            f"({run.spec.learning_rate}) and train again."
        )
    return value


def _conditioning(run: Run, members: list[int]) -> Conditioning:
    """The batch's text side; a batch of one (the presets') uses its caption's tensors as they are, no copy."""
    device = run.runtime.device
    embeddings = [run.texts[run.samples[i].caption] for i in members]
    if len(embeddings) == 1:
        prompt_embeds, pooled = embeddings[0].prompt_embeds.to(device), embeddings[0].pooled.to(device)
    else:
        prompt_embeds = torch.cat([e.prompt_embeds for e in embeddings]).to(device)
        pooled = torch.cat([e.pooled for e in embeddings]).to(device)
    return Conditioning(prompt_embeds=prompt_embeds, pooled=pooled,
                        text_ids=run.flow.text_ids(prompt_embeds.shape[1], device))


def report_progress(run: Run, done: int, loss: float) -> None:
    elapsed = time.perf_counter() - run.timings["started"]
    it_per_s = (done - run.start_step) / elapsed if elapsed > 0 else 0.0
    eta = (run.spec.steps - done) / it_per_s if it_per_s > 0 else None
    run.emit(
        {
            "event": "progress",
            "step": done,
            "total": run.spec.steps,
            "loss": loss,
            "lr": run.optimizer.param_groups[0]["lr"],
            "it_per_s": round(it_per_s, 4),
            "eta_s": None if eta is None else round(eta, 1),
        }
    )


def make_samples(run: Run, step: int, only_missing: bool = False) -> None:
    if run.sampler is None:
        return
    started, made = time.perf_counter(), 0
    for prompt, path in run.sampler.sample(step, only_missing):
        run.emit({"event": "sample", "step": step, "path": str(path), "prompt": prompt})
        made += 1
    if made:  # bench/train_overhead.py reads this: the plain loop it compares with makes no samples
        log.info("samples_made", step=step, images=made, seconds=round(time.perf_counter() - started, 3))


def save_checkpoint(run: Run, step: int) -> Path:
    state = lora.lora_state(run.transformer)
    extra = {"data_order": run.order.state(step), "total_steps": run.spec.steps}
    path = checkpoint.save_checkpoint(run.output_dir / "checkpoints", step, state, run.optimizer.state_dict(), extra)
    run.emit({"event": "checkpoint", "step": step, "path": str(path)})
    return path


def save_final_lora(run: Run) -> Path:
    spec = run.spec
    path = run.output_dir / f"{spec.lora_name}.safetensors"
    state = lora.portable_state(lora.lora_state(run.transformer), spec.rank, spec.alpha)
    metadata = lora_metadata(spec, "diffusers", lora.engine_version(), app_version())
    lora.save_final_lora(path, state, metadata)
    return path


def app_version() -> str:
    try:
        return importlib.metadata.version("isengard-desktop")
    except importlib.metadata.PackageNotFoundError:
        # Running from a source checkout: the package's own constant is the version.
        try:
            from isengard_desktop import __version__
        except ImportError:
            return "unknown"
        return str(__version__)


def _check_name(name: str) -> None:
    if not name or name.strip() != name or any(c in name for c in '/\\:*?"<>|') or name in (".", ".."):
        raise TrainingError(f"The LoRA name {name!r} cannot be a file name; use letters, digits, - and _.")


def _warn(emit: Emit, text: str) -> None:
    log.warning("training_warning", message=text)
    emit({"event": "log", "level": "warning", "message": text})
