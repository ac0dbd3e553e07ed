"""An image engine in a package of its own: it subclasses ``engines.interface.Engine``, declares its traits, and
implements ``ImageEngine``. Each image is one colour chosen from its seed (Pillow only, in the worker), so a test
can tell which seed made which file."""

from __future__ import annotations

from pathlib import Path

from engines.interface import (
    Availability,
    BaseModel,
    Emit,
    Engine,
    EngineTraits,
    GenerationRequest,
    ShouldStop,
)


def colour(seed: int) -> tuple[int, int, int]:
    return seed * 97 % 256, seed * 57 % 256, seed * 31 % 256


class EchoEngine(Engine):
    name = "echo"
    traits = EngineTraits(title="Echo (test plugin)", kinds=("image",), rank=95)

    def availability(self) -> Availability:
        return Availability(True)

    def base_model(self, fast_test: bool) -> BaseModel:
        return BaseModel("none", "no model (echo)", True)

    def advanced_readiness(self) -> dict[str, Availability]:
        return {}

    def generate(self, request: GenerationRequest, emit: Emit, should_stop: ShouldStop) -> str:
        from PIL import Image

        out = Path(request.output_dir)
        for index in range(request.batch_count):
            if should_stop():
                return "cancelled"
            seed = request.seed + index
            path = out / f"echo_{index:02d}_{seed}.png"
            Image.new("RGB", (request.width, request.height), colour(seed)).save(path)
            emit({"event": "progress", "step": index + 1, "total": request.batch_count, "index": index,
                  "count": request.batch_count})
            emit({"event": "image", "index": index, "path": str(path), "seed": seed,
                  "parameters": f"{request.prompt}\nSteps: 0, Seed: {seed}, Model: echo"})
        return "succeeded"
