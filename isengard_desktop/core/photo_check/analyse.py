"""From what was measured on each photo to the issues, the near-duplicate groups, the identity scores and the
dataset's verdict. Pure (numpy, no OpenCV): the check job, the CLI, the Dataset tab and the Training pre-flight
all read the same report, built from the cached measures.

Thresholds, measured on scikit-image's real photos and variants derived from them (tests/photo_check,
README "Dataset checks"):

- blurry: sharpness (variance of the Laplacian of the contrast-stretched face, 160 px) under 30. The astronaut's
  face reads 230-520 at every size and JPEG quality 30; Gaussian blur sigma 1 -> 55, sigma 2 -> 17, sigma 4 -> 7.
  Whole photos without a face (coffee, cat, coins, moon, retina) read 90-11,700.
- face_too_small: the largest face's side under 10% of the photo's short side (a face under ~100 px of a 1024 px
  training crop). The astronaut portrait is 18%; pasted into a 1400 px frame, 7%.
- underexposed / overexposed: mean brightness of the face under 0.20 / over 0.80, or over 30% of it at pure
  black or white. The astronaut reads 0.55 (2% clipped); at 1/4 brightness 0.13, at 2.5x 0.85 (58% clipped).
- near_duplicate: 64-bit pHash of the whole photo within 10 bits (resizes, re-encodes, blur and exposure
  changes of the astronaut are 0-4 bits; the least different pair of unrelated photos is 20), or the pHash of the
  largest face within 10 bits (a 10% crop: 4 bits; 100 different people's faces of LFW: 2 pairs in 4,950).
- identity_outlier: cosine similarity to the character's median face embedding under 0.363, OpenCV's own
  threshold for "same person" with SFace; only with 3 or more faces embedded (two photos have no majority).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from isengard_desktop.core.photo_check.embedder import SAME_PERSON_COSINE

# numpy is imported where it is used: the window imports this module at start-up, and numpy costs ~0.15 s there.

BLURRY_BELOW = 30.0
FACE_SHARE_BELOW = 0.10
DARK_BELOW, BRIGHT_ABOVE, CLIPPED_ABOVE = 0.20, 0.80, 0.30
NEAR_DUPLICATE_BITS = 10
MIN_FACES_FOR_IDENTITY = 3
MIN_USABLE = 5  # fewer usable photos than this and an identity LoRA has too little to learn a face from

# Most harmful first: the advice names the first that occurs.
ISSUES = ("several_faces", "identity_outlier", "no_face", "blurry", "face_too_small", "near_duplicate",
          "low_resolution", "underexposed", "overexposed", "not_checked")
BADGES = {
    "several_faces": "several faces", "identity_outlier": "someone else?", "no_face": "no face", "blurry": "blurred",
    "face_too_small": "small face", "near_duplicate": "near-copy", "low_resolution": "low res",
    "underexposed": "dark", "overexposed": "bright", "not_checked": "not checked",
}
_ADVICE = {
    "several_faces": "{n} photo{s} show{v} more than one face: crop {them} to the person or remove {them}.",
    "identity_outlier": "{n} photo{s} may show someone else: check {them} and remove those of other people.",
    "no_face": "{n} photo{s} show{v} no face the detector can find: keep them only if the face is turned away "
               "on purpose.",
    "blurry": "{n} photo{s} {are} blurred: replace {them} with sharp ones.",
    "face_too_small": "{n} photo{s} show{v} the face too small: crop {them} closer to the face.",
    "near_duplicate": "{n} photo{s} {are} near-{copies} of another: remove {them} so one picture does not dominate.",
    "low_resolution": "{n} photo{s} {are} too small for training: replace {them} with larger ones.",
    "underexposed": "{n} photo{s} {are} too dark: replace or brighten {them}.",
    "overexposed": "{n} photo{s} {are} washed out: replace {them}.",
    "not_checked": "{n} photo{s} {are} not checked yet: press Check photos.",
}


@dataclass(frozen=True)
class PhotoInput:
    """One image of the character: who it is, and what was measured on it (None: not checked yet)."""
    id: int
    too_small: bool
    measures: dict[str, Any] | None  # a photo_checks row as a dict (faces decoded, embedding as an array)


@dataclass
class Report:
    images: list[dict[str, Any]]
    summary: dict[str, Any]
    reasons: dict[int, list[str]] = field(default_factory=dict)  # image id -> one sentence per issue

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "summary": self.summary}

    def by_image(self) -> dict[int, dict[str, Any]]:
        """image id -> its entry with the reasons as sentences (the Dataset tab's badges and details)."""
        return {i["id"]: {**i, "reasons": self.reasons.get(i["id"], [])} for i in self.images}

    def preflight_lines(self, names: dict[int, str], limit: int = 6) -> list[str]:
        """The Training pre-flight's lines about the dataset: the verdict, the advice, and the photos behind it.
        A warning, never a refusal: the person decides."""
        s = self.summary
        if not s["total"]:
            return []
        if s["flagged"] == 0:
            return [f"✔ Photos checked: all {s['total']} look usable."]
        unchecked = s["issues"].get("not_checked", 0)
        if unchecked == s["total"]:
            return [f"• Photos not checked yet: press Check photos in the Dataset tab to find the ones that "
                    f"would hurt the likeness ({s['total']} photos)."]
        mark = "⚠" if s["verdict"] == "not_ready" else "•"
        lines = [f"{mark} Photos: {s['usable']} of {s['total']} look usable. {s['advice']}"]
        flagged = [i for i in self.images if i["issues"] and i["issues"] != ["not_checked"]]
        named = [f"{names.get(i['id'], i['id'])} ({', '.join(BADGES[c] for c in i['issues'])})"
                 for i in flagged[:limit]]
        if named:
            more = f" and {len(flagged) - limit} more" if len(flagged) > limit else ""
            lines.append("   " + "; ".join(named) + more + ".")
        return lines


def _hamming_groups(ids: list[int], hashes: list[str | None]) -> dict[int, int]:
    """image id -> the id of the earliest image it is a near-copy of (only for the later ones of a group)."""
    import numpy as np

    known = [(i, int(h, 16)) for i, h in zip(ids, hashes, strict=True) if h]
    if len(known) < 2:
        return {}
    values = np.array([h for _, h in known], dtype=np.uint64)
    out: dict[int, int] = {}
    for row, (image_id, value) in enumerate(known):
        if image_id in out:
            continue
        xor = values[row + 1:] ^ np.uint64(value)
        bits = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for offset in np.nonzero(bits <= NEAR_DUPLICATE_BITS)[0]:
            other = known[row + 1 + int(offset)][0]
            out.setdefault(other, image_id)
    return out


def _near_copies(photos: list[PhotoInput]) -> dict[int, int]:
    checked = sorted((p for p in photos if p.measures), key=lambda p: p.id)
    ids = [p.id for p in checked]
    whole = _hamming_groups(ids, [p.measures["phash"] for p in checked])
    faces = _hamming_groups(ids, [p.measures.get("face_phash") for p in checked])
    merged = dict(faces)
    merged.update(whole)
    # A photo pointing at one that is itself a copy points at the group's first photo.
    return {k: _root(merged, v) for k, v in merged.items()}


def _root(links: dict[int, int], image_id: int) -> int:
    seen = set()
    while image_id in links and image_id not in seen:
        seen.add(image_id)
        image_id = links[image_id]
    return image_id


def identity_scores(photos: list[PhotoInput]) -> dict[int, float]:
    """Cosine similarity of each embedded face to the element-wise median of all of them."""
    import numpy as np

    embedded = [(p.id, p.measures["embedding"]) for p in photos
                if p.measures and p.measures.get("embedding") is not None]
    if not embedded:
        return {}
    matrix = np.stack([e for _, e in embedded]).astype(np.float32)
    centre = np.median(matrix, axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    norms = np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
    return {image_id: round(float(s), 4) for (image_id, _), s in zip(embedded, matrix @ centre / norms, strict=True)}


def _issues(p: PhotoInput, duplicate_of: int | None, score: float | None, judge_identity: bool) -> list[str]:
    m = p.measures
    out = []
    if m is None:
        out.append("not_checked")
    else:
        faces = m["faces"]
        if not faces:
            out.append("no_face")
        elif len(faces) > 1:
            out.append("several_faces")
        if faces and min(faces[0][2], faces[0][3]) < FACE_SHARE_BELOW * min(m["width"], m["height"]):
            out.append("face_too_small")
        if m["sharpness"] < BLURRY_BELOW:
            out.append("blurry")
        if m["exposure"] < DARK_BELOW:
            out.append("underexposed")
        elif m["exposure"] > BRIGHT_ABOVE or m["clipped"] > CLIPPED_ABOVE:
            out.append("overexposed")
        if duplicate_of is not None:
            out.append("near_duplicate")
        if judge_identity and score is not None and score < SAME_PERSON_COSINE:
            out.append("identity_outlier")
    if p.too_small:
        out.append("low_resolution")
    return sorted(out, key=ISSUES.index)


def reason(code: str, image: dict[str, Any]) -> str:
    """One sentence for a badge's tooltip and the details panel."""
    if code == "several_faces":
        return f"{image['faces']} faces: crop to the person or remove the photo."
    if code == "identity_outlier":
        return (f"Looks unlike the others (similarity {image['identity_score']:.2f}, under "
                f"{SAME_PERSON_COSINE}): is it someone else?")
    if code == "near_duplicate":
        return f"A near-copy of image {image['duplicate_of']}: keep one of them."
    if code == "blurry":
        return f"Blurred (sharpness {image['sharpness']:.0f}, under {BLURRY_BELOW:.0f})."
    if code in ("underexposed", "overexposed"):
        return f"Too {'dark' if code == 'underexposed' else 'bright'} (brightness {image['exposure']:.2f})."
    return {"no_face": "No face found (the detector finds faces turned towards the camera).",
            "face_too_small": f"The face is under {FACE_SHARE_BELOW:.0%} of the photo: crop closer.",
            "low_resolution": "Smaller than the training size: replace it with a larger photo.",
            "not_checked": "Not checked yet: press Check photos."}[code]


def _advice(counts: dict[str, int], total: int, usable: int) -> str:
    if total == 0:
        return "The character has no photos yet: import some."
    for code in ISSUES:
        n = counts.get(code, 0)
        if n:
            text = _ADVICE[code].format(n=n, s="" if n == 1 else "s", v="s" if n == 1 else "",
                                        are="is" if n == 1 else "are", them="it" if n == 1 else "them",
                                        copies="copy" if n == 1 else "copies")
            if usable < MIN_USABLE:
                text += (f" Only {usable} photo{' looks' if usable == 1 else 's look'} usable; {MIN_USABLE} or more "
                         "give a LoRA enough to learn from.")
            return text
    return f"All {total} photos look usable for training."


def build_report(photos: Iterable[PhotoInput], identity: dict[str, Any]) -> Report:
    """The report of ``isengard dataset check --json``. ``identity``: {"ready", "embedder", "reason"}."""
    photos = sorted(photos, key=lambda p: p.id)
    copies = _near_copies(photos)
    scores = identity_scores(photos)
    judge = bool(identity.get("ready")) and len(scores) >= MIN_FACES_FOR_IDENTITY
    images, reasons, counts = [], {}, {}
    for p in photos:
        m = p.measures or {}
        entry = {
            "id": p.id, "faces": len(m["faces"]) if p.measures else None, "face_boxes": m.get("faces", []),
            "sharpness": m.get("sharpness"), "exposure": m.get("exposure"),
            "identity_score": scores.get(p.id), "duplicate_of": copies.get(p.id),
            "issues": [],
        }
        entry["issues"] = _issues(p, entry["duplicate_of"], entry["identity_score"], judge)
        reasons[p.id] = [reason(code, entry) for code in entry["issues"]]
        for code in entry["issues"]:
            counts[code] = counts.get(code, 0) + 1
        images.append(entry)
    flagged = sum(1 for i in images if i["issues"])
    usable = len(images) - flagged
    if not images or usable < MIN_USABLE:
        verdict = "not_ready"
    else:
        verdict = "warnings" if flagged else "ready"
    summary = {
        "total": len(images), "usable": usable, "flagged": flagged,
        "issues": {code: counts[code] for code in ISSUES if code in counts},
        "verdict": verdict, "advice": _advice(counts, len(images), usable),
        "identity": {"ready": bool(identity.get("ready")), "embedder": identity.get("embedder"),
                     "reason": identity.get("reason", "") or (
                         "" if judge or not identity.get("ready") else
                         f"Identity is judged from {MIN_FACES_FOR_IDENTITY} or more faces; "
                         f"{len(scores)} found.")},
    }
    return Report(images=images, summary=summary, reasons=reasons)
