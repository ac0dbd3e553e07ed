"""Which face embedder the identity check uses, and embedding one face with it.

Production: OpenCV Zoo's SFace (``face_recognition_sface_2021dec.onnx``, Apache-2.0, a MobileFaceNet trained with
the SFace loss; 128-d embeddings), downloaded by the model manager (catalogue model ``sface``) into
``models/face-embedder/``, run by ``cv2.FaceRecognizerSF``. InsightFace's packs were not chosen: their licence
forbids commercial use. Fast-test: the tiny random-weight ONNX of ``tiny_embedder`` through the same code.
Without the model in production mode the identity check is *not ready* and says why; the other checks run.

``resolve`` imports nothing heavy (the window calls it to say whether identity is checked);
``Embedder`` imports OpenCV (worker only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from isengard_desktop.core.photo_check.tiny_embedder import TINY_EMBEDDER_ID, TINY_FILE, ensure_tiny_embedder

if TYPE_CHECKING:
    import numpy as np

SFACE_MODEL_ID = "sface"  # the catalogue's id (resources/models/catalogue.json)
SFACE_EMBEDDER_ID = "sface-2021dec"
SFACE_FILE = "face-embedder/face_recognition_sface_2021dec.onnx"
# OpenCV's own cosine threshold for SFace: two faces above it are the same person (opencv_zoo's sface.py and
# the FaceRecognizerSF tutorial). The tiny random-weight embedder gives no meaning to any threshold; it uses the
# same one so the same code runs.
SAME_PERSON_COSINE = 0.363
INPUT_SIDE = 112


@dataclass(frozen=True)
class EmbedderChoice:
    id: str | None  # None: identity is not checked
    path: Path | None
    reason: str  # why identity is not checked ("" when it is)

    @property
    def ready(self) -> bool:
        return self.id is not None


def resolve(mode: str, models_dir: Path, build: bool = False) -> EmbedderChoice:
    """The embedder this mode uses. ``build=True`` (the worker) writes the tiny model when fast-test needs it."""
    if mode == "fast-test":
        path = ensure_tiny_embedder(models_dir) if build else models_dir / TINY_FILE
        return EmbedderChoice(TINY_EMBEDDER_ID, path, "")
    path = models_dir / SFACE_FILE
    if path.is_file():
        return EmbedderChoice(SFACE_EMBEDDER_ID, path, "")
    return EmbedderChoice(None, None, "Identity is not checked: the face embedder SFace (38.7 MB) is not "
                                      "downloaded; download it in Settings → Models or with "
                                      f"`isengard models download {SFACE_MODEL_ID}`.")


class Embedder:
    """One loaded embedder (OpenCV's FaceRecognizerSF over an ONNX file)."""

    def __init__(self, choice: EmbedderChoice) -> None:
        import cv2

        self.id = choice.id
        try:
            self._net = cv2.FaceRecognizerSF.create(str(choice.path), "")
        except cv2.error as exc:
            raise RuntimeError(f"The face embedder {choice.path} could not be loaded ({str(exc).strip()[:120]}); "
                               "delete it and download it again in Settings → Models.") from exc

    def embed(self, face_rgb: np.ndarray) -> np.ndarray:
        """A unit-length float32 embedding of a face crop (RGB)."""
        import cv2
        import numpy as np

        # SFace expects a 112x112 BGR face; without landmarks (the Haar detector gives none) the crop is resized
        # rather than warped onto five points, which costs SFace some accuracy on turned heads.
        face = cv2.resize(cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR), (INPUT_SIDE, INPUT_SIDE),
                          interpolation=cv2.INTER_AREA)
        vector = np.asarray(self._net.feature(face), dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector
