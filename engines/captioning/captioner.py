"""Caption one photo at a time with a Qwen3-VL folder (the real Qwen3-VL-4B-Instruct or the tiny one).

The inputs are built here rather than by transformers' ``Qwen3VLProcessor``: that class insists on a video processor,
which needs torchvision, and the app does not install torchvision (nothing else needs it). What the processor does
for one image is small — the image processor's patches, Qwen's chat prompt with one ``<|image_pad|>`` per merged
patch, and the modality ids M-RoPE reads — and doing it here keeps the real model and the tiny one on one path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# A photo is seen at up to about one megapixel (1,024 visual tokens for Qwen3-VL's 32 px merged patches): enough to
# describe clothing and background, and it keeps a 12 GB card's activations small.
MAX_PIXELS = 1024 * 1024
MAX_NEW_TOKENS = 96  # two sentences; the caption is cut to its length limit anyway
PROMPT = "<|im_start|>user\n<|vision_start|>{pads}<|vision_end|>{instruction}<|im_end|>\n<|im_start|>assistant\n"
IMAGE_PAD = "<|image_pad|>"
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", IMAGE_PAD, "<|video_pad|>")
# Greedy decoding is repeatable but can loop on one phrase; a mild penalty (as Qwen's own generation settings use)
# keeps a caption from repeating itself.
REPETITION_PENALTY = 1.05


def image_processor_class() -> Any:
    """Qwen2-VL's image processor on the PIL backend (the default one needs torchvision)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil


@dataclass
class Answer:
    text: str
    seconds: float
    new_tokens: int


class Captioner:
    """A loaded model folder on the best device here (a CUDA GPU in bf16, else the CPU in fp32)."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import torch
        from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

        self.folder = Path(folder)
        if threads:
            torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # bf16 halves the 4B model to about 9 GB on a card; on a CPU half precision is far slower than fp32.
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.images = image_processor_class().from_pretrained(self.folder)
        # Loaded straight onto the device (accelerate, a peft dependency): a 12 GB card's machine need not hold the
        # 9 GB of weights in RAM first.
        self.model = Qwen3VLForConditionalGeneration.from_pretrained(self.folder, dtype=dtype,
                                                                     device_map=self.device).eval()
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        # A caption never contains vision markers; a model that emits one has lost its way (the tiny one does).
        self.suppress = [self.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
        self.merge = int(self.images.merge_size) ** 2
        longest = int((self.images.size or {}).get("longest_edge") or MAX_PIXELS)
        self.size = {"shortest_edge": int((self.images.size or {}).get("shortest_edge") or 56 * 56),
                     "longest_edge": min(longest, MAX_PIXELS)}
        log.info("captioner_loaded", folder=str(self.folder), device=self.device, dtype=str(dtype),
                 seconds=round(time.monotonic() - started, 3))

    def inputs(self, image: Any, instruction: str) -> dict[str, Any]:
        """What ``generate`` takes for one RGB PIL image and the instruction."""
        pixels = self.images(images=[image], size=self.size, return_tensors="pt")
        pads = int(pixels["image_grid_thw"][0].prod()) // self.merge
        text = PROMPT.format(pads=IMAGE_PAD * pads, instruction=instruction)
        encoded = self.tokenizer([text], return_tensors="pt")
        ids = encoded["input_ids"]
        # 1 marks image tokens, 0 text: Qwen3-VL's multimodal rotary positions are computed from it.
        modality = (ids == self.image_token_id).long()
        batch = {"input_ids": ids, "attention_mask": encoded["attention_mask"], "mm_token_type_ids": modality,
                 **pixels}
        return {k: v.to(self.device) for k, v in batch.items()}

    def answer(self, image: Any, instruction: str, should_stop: Callable[[], bool] = lambda: False,
               max_new_tokens: int = MAX_NEW_TOKENS) -> Answer:
        """The model's answer for one image (greedy, so a run is repeatable)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            # A cancel stops generation at the next token, not at the end of the caption.
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device)

        batch = self.inputs(image, instruction)
        started = time.monotonic()
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                      repetition_penalty=REPETITION_PENALTY, suppress_tokens=self.suppress,
                                      stopping_criteria=StoppingCriteriaList([_Stop()]))
        new = out[0, batch["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Answer(text=text, seconds=time.monotonic() - started, new_tokens=int(new.shape[0]))


def load_image(path: Path) -> Any:
    """The photo upright (EXIF orientation applied) in 8-bit RGB; HEIC too (image_probe registers its opener)."""
    from PIL import Image, ImageOps

    from isengard_desktop.base.image_probe import to_rgb

    with Image.open(path) as raw:
        return to_rgb(ImageOps.exif_transpose(raw))
