"""What "Check photos" measures on one photo: faces, sharpness and exposure (on the face when there is one), and
perceptual hashes for near-duplicates. Runs in the check job's worker process only (it imports OpenCV).

The face detector is OpenCV's frontal-face Haar cascade ``haarcascade_frontalface_alt2.xml``, which ships inside
the opencv-python-headless wheel (``cv2/data/``), so face checks are real offline, in every mode and in the tests.
Why that one (README "Dataset checks"): of the wheels checked, opencv-python-headless 4.x ships Haar cascades
(5.0 ships none: hence the ``<5`` pin), mediapipe 1.x ships no model and 0.10.x pulls GUI OpenCV (clashes with
Qt), jax and matplotlib; YuNet ships in no well-kept wheel. On scikit-image's real photos ``alt2`` found the
astronaut's face and nothing in the coffee, cat, rocket, coins and moon photos, where ``default`` saw faces in
the coins and the moon.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from isengard_desktop.base.image_probe import reduced_rgb, upright
from isengard_desktop.core.photo_check.cache import CASCADE, MIN_NEIGHBOURS

DETECT_SIDE = 640  # photos are searched at this long side at most (a face of 1/16 of the photo is still 40 px)
MEASURE_SIDE = 512  # the whole-photo sharpness is measured at this long side, so figures compare across sizes
FACE_SIDE = 160  # a face is measured at this size (with its margin), so a big and a small face compare

_cascade = None


@dataclass(frozen=True)
class Measures:
    width: int
    height: int
    faces: list[list[int]]  # [x, y, w, h] in the upright photo's pixels, largest first
    sharpness: float
    exposure: float
    clipped: float
    phash: str
    face_phash: str | None
    face_crop: np.ndarray | None  # RGB uint8 of the largest face (for the embedder), not stored


def detector_path() -> Path:
    import cv2

    return Path(cv2.data.haarcascades) / CASCADE


def _detector():
    global _cascade
    if _cascade is None:
        import cv2

        cv2.setNumThreads(1)  # one photo per process at a time; the job spreads photos over the cores itself
        _cascade = cv2.CascadeClassifier(str(detector_path()))
        if _cascade.empty():
            raise RuntimeError(f"OpenCV could not read its face detector {detector_path()}; reinstall the app.")
    return _cascade


def load_upright(path: Path, orientation: int) -> Image.Image:
    """The stored photo, upright, as RGB no larger than needed (a 48 MP photo is reduced by a whole factor)."""
    with Image.open(path) as image:
        image.draft("RGB", (DETECT_SIDE * 2, DETECT_SIDE * 2))  # JPEG decodes at 1/2..1/8 scale: far faster
        rgb = reduced_rgb(image, DETECT_SIDE * 2)
        rgb.load()  # an RGB photo comes back as itself, still lazy: read it before the file closes
        full = image.size
    rgb = upright(rgb, orientation)
    if orientation in (5, 6, 7, 8):
        full = (full[1], full[0])
    rgb.info["full_size"] = full
    return rgb


def detect_faces(gray: np.ndarray) -> list[list[int]]:
    """Frontal faces in a greyscale picture, [x, y, w, h], largest first."""
    import cv2

    short = min(gray.shape[:2])
    # Faces under 1/40 of the short side are not looked for: far too small to learn a likeness from, and where the
    # cascade's false detections (textures) live.
    min_side = max(20, short // 40)
    found = _detector().detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=MIN_NEIGHBOURS,
                                         minSize=(min_side, min_side))
    boxes = [[int(v) for v in box] for box in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def _sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian after stretching the region's contrast (1st..99th percentile to 0..255): without
    the stretch a dim or flat-lit face reads as blurred (the astronaut at a quarter brightness lost 93%)."""
    import cv2

    low, high = np.percentile(gray, (1, 99))
    stretched = (gray.astype(np.float64) - low) * (255.0 / max(high - low, 1.0))
    return float(cv2.Laplacian(np.clip(stretched, 0, 255), cv2.CV_64F).var())


def _phash(rgb: Image.Image) -> str:
    import imagehash

    return str(imagehash.phash(rgb))


def _face_region(rgb: np.ndarray, box: list[int], margin: float = 0.2) -> np.ndarray:
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    return rgb[max(0, y - dy): y + h + dy, max(0, x - dx): x + w + dx]


def measure(path: Path, orientation: int = 1) -> Measures:
    import cv2

    picture = load_upright(path, orientation)
    full_w, full_h = picture.info["full_size"]
    scale = DETECT_SIDE / max(picture.size)
    small = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                           Image.Resampling.BILINEAR) if scale < 1 else picture
    rgb = np.asarray(small)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    boxes = detect_faces(gray)
    back = full_w / small.width  # boxes are reported in the upright photo's own pixels
    faces = [[round(v * back) for v in box] for box in boxes]
    face_crop = face_phash = None
    if boxes:
        face_crop = np.ascontiguousarray(_face_region(rgb, boxes[0]))
        region = cv2.resize(cv2.cvtColor(face_crop, cv2.COLOR_RGB2GRAY), (FACE_SIDE, FACE_SIDE),
                            interpolation=cv2.INTER_AREA)
        face_phash = _phash(Image.fromarray(face_crop))
    else:
        m = MEASURE_SIDE / max(gray.shape)
        region = cv2.resize(gray, None, fx=m, fy=m, interpolation=cv2.INTER_AREA) if m < 1 else gray
    return Measures(
        width=full_w, height=full_h, faces=faces, sharpness=round(_sharpness(region), 2),
        exposure=round(float(region.mean()) / 255.0, 4),
        clipped=round(float(((region <= 3) | (region >= 252)).mean()), 4),
        phash=_phash(small), face_phash=face_phash, face_crop=face_crop,
    )
