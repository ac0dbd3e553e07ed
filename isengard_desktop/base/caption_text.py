"""Automatic captions as text: the instruction given to the vision-language model, and the rules that turn whatever
it answers into a caption training can use.

Whatever the model says — a good description, a refusal, a preamble, or the gibberish of fast-test's random-weight
model — ``finish_caption`` returns a caption that contains the character's trigger word exactly once, holds only
printable text and stays within the length limit. Identity LoRAs learn the face from the trigger word, so by
default the person's fixed traits (face, hair, eye and skin colour, ethnicity, age, body) are left out: asked in the
instruction, and what the model says anyway is filtered out here (``keep_traits=True`` keeps them).

Pure text, no torch: the worker uses it on the model's answer, the job manager checks a caption again with
``trigger_count`` before storing it, and the tests run it without a model.
"""

from __future__ import annotations

import re
import unicodedata

DEFAULT_CAPTION = "a photo of {trigger}"
# FLUX's T5 encoder reads 512 tokens (CLIP only 77); 1,000 characters is about 250 tokens, a long
# description already, and keeps a pasted document out of the database and of every training run.
MAX_CAPTION_LENGTH = 1000


def default_caption(trigger_word: str) -> str:
    return DEFAULT_CAPTION.format(trigger=trigger_word)


# Shorter than the stored limit: FLUX's CLIP encoder reads 77 tokens and a caption for one photo rarely needs more
# than two sentences; a rambling answer is cut at its last full sentence (or word) before this.
TARGET_LENGTH = min(300, MAX_CAPTION_LENGTH)
MIN_WORDS = 3  # fewer real words than this after cleaning: the answer is not a description (gibberish, refusal)

BASE_INSTRUCTION = (
    "Write one caption for this photo to train an image model on the person in it. Describe in one or two plain "
    "sentences what can change from photo to photo: clothing, pose, expression, what they are doing, the framing "
    "(close-up, half body, full body), the background, the lighting. Start with 'a photo of a person'."
)
OMIT_TRAITS_INSTRUCTION = (
    " Do not describe the person's face, facial features, hair, eye colour, skin colour, ethnicity, age or body"
    " shape, and never name the person."
)
KEEP_TRAITS_INSTRUCTION = " Also describe their hair, eyes and other visible features; never name the person."

_PREAMBLES = re.compile(
    r"^(?:sure[,!.]?\s*|here(?:'s| is) (?:a|the|one) caption[^:]*:\s*|caption:\s*|"
    r"(?:the|this) (?:image|photo|picture|photograph) (?:shows|depicts|features|is of)\s+)+", re.I)
# Clauses that describe what an identity LoRA should learn from the trigger word: dropped whole.
_TRAIT_CLAUSE = re.compile(
    r"\b(?:hair|haired|eyes?|eyed|eyebrows?|skin|complexion|freckles?|ethnicity|ethnic|facial features?|"
    r"cheekbones?|jawline|years? old|in (?:his|her|their) (?:teens|twenties|thirties|forties|fifties|"
    r"sixties|seventies|eighties))\b", re.I)
# Single words that name a fixed trait inside an otherwise useful clause: only the word goes.
_TRAIT_WORDS = re.compile(
    r"\b(?:\d+-year-old|young|younger|old|older|elderly|middle-aged|teenage|aged|blonde?|brunette|redheaded|redhead|"
    r"ginger|bald|asian|african|african-american|caucasian|european|hispanic|latina|latino|indian|arab|"
    r"black-haired|white-haired|grey-haired|gray-haired|dark-skinned|light-skinned|fair-skinned|pale|tanned|"
    r"slim|slender|skinny|chubby|overweight|muscular|petite|tall|short)\b\s*", re.I)
_PERSON = re.compile(r"\b(?:an?|the)\s+((?:[a-z0-9-]+\s+){0,2}?)(person|woman|man|girl|boy|lady|gentleman|guy|child|"
                     r"individual|people)\b", re.I)
_TRAIT_PHRASE = re.compile(
    r"(?:\b(?:with|and|has|have)\s+)?(?:\b[\w-]+\s+){0,2}\b(?:hair|eyes|eyebrows|skin|complexion|freckles|"
    r"cheekbones|jawline)\b", re.I)
_CLAUSE_SPLIT = re.compile(r",\s*|\s+and\s+(?=(?:has|with|her|his|their)\b)|"
                           r"\s+with\s+(?=(?:[\w-]+\s+){0,3}(?:hair|eyes)\b)")
SHORT_CLAUSE_WORDS = 12  # a clause this short that mentions a fixed trait is about the trait: dropped whole
# An answer that refuses or apologises is no description.
_REFUSAL = re.compile(r"^(?:i(?:'m| am)? (?:sorry|unable|not able)|i can(?:'|no)t|sorry|as an ai|unfortunately)",
                      re.I)
_ALLOWED = re.compile(r"[^A-Za-z0-9 ,.;:'()/&-]+")


def instruction(keep_traits: bool = False) -> str:
    """What the model is asked, for one photo."""
    return BASE_INSTRUCTION + (KEEP_TRAITS_INSTRUCTION if keep_traits else OMIT_TRAITS_INSTRUCTION)


def _trigger_pattern(trigger: str) -> re.Pattern[str]:
    # Trigger words are letters, digits, '_' and '-' (core/characters.py): a match must not touch another such char.
    return re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(trigger)}(?![A-Za-z0-9_-])", re.I)


def trigger_count(caption: str, trigger: str) -> int:
    """How many times the trigger word stands as a word of its own in the caption."""
    return len(_trigger_pattern(trigger).findall(caption))


def clean_text(raw: str) -> str:
    """Printable, single-spaced text: control characters, markup and stray symbols out, preambles cut."""
    text = unicodedata.normalize("NFKC", raw)
    text = text.replace("\u2019", "'").replace("*", " ").replace("#", " ").replace('"', " ")
    text = _ALLOWED.sub(" ", text)
    text = collapse_repeats(" ".join(text.split()))
    text = _PREAMBLES.sub("", text).strip(" ,;:-")
    return text


def collapse_repeats(text: str) -> str:
    """A phrase of one to four words said again and again in a row (a model caught in a loop) is said once."""
    words = text.split()
    out: list[str] = []
    for word in words:
        out.append(word)
        for size in range(1, 5):
            if len(out) >= 2 * size and [w.lower() for w in out[-size:]] == [w.lower() for w in out[-2 * size:-size]]:
                del out[-size:]
                break
    return " ".join(out)


def _without_trait_phrases(clause: str) -> str:
    # A long clause keeps its other words: only the trait phrase goes (up to two words before "hair", "eyes"...).
    return _TRAIT_PHRASE.sub(" ", clause)


def drop_traits(text: str) -> str:
    """Leave out the person's fixed traits: a short clause about hair, eyes, skin, age... goes whole, a long one
    loses the trait phrase; single trait words ("young", "blonde") go."""
    kept = []
    for sentence in re.split(r"(?<=[.;])\s+", text):
        clauses = [c for c in _CLAUSE_SPLIT.split(sentence) if c.strip()]
        good = []
        for clause in clauses:
            if _TRAIT_CLAUSE.search(clause):
                if len(clause.split()) <= SHORT_CLAUSE_WORDS:
                    continue
                clause = _without_trait_phrases(clause)
            good.append(clause)
        if good:
            kept.append(", ".join(_TRAIT_WORDS.sub("", c).strip() for c in good))
    text = " ".join(k for k in kept if k)
    return " ".join(text.replace(" ,", ",").split()).strip(" ,;:-")


def _real_words(text: str) -> int:
    return len([w for w in re.findall(r"[A-Za-z]+", text) if len(w) >= 2 and re.search(r"[aeiouyAEIOUY]", w)])


def _bound(text: str, limit: int) -> str:
    """Cut at the last full sentence, else the last word, within ``limit`` characters."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("; "))
    if end >= limit // 3:
        return head[: end + 1]
    return head.rsplit(" ", 1)[0].rstrip(" ,;:-")


def with_trigger(text: str, trigger: str) -> str:
    """The text with the trigger word in it once: it names the first person mentioned ("a woman ..." becomes
    "a photo of TRIGGER woman ..."), or leads the caption when nobody is mentioned."""
    text = _trigger_pattern(trigger).sub("", text)
    text = " ".join(text.split()).strip(" ,;:-")
    text = re.sub(r"^(?:an?\s+)?(?:photo|picture|photograph|image|portrait)\s+of\s+", "", text, flags=re.I)
    match = _PERSON.search(text)
    if match and match.start() < 80:
        noun = match.group(2).lower()
        noun = "person" if noun in ("individual", "people") else noun
        text = text[: match.start()] + f"{trigger} {noun}" + text[match.end():]
        return f"a photo of {text}" if match.start() == 0 else text
    return f"a photo of {trigger}, {text[:1].lower()}{text[1:]}"


def finish_caption(raw: str, trigger: str, keep_traits: bool = False) -> tuple[str, bool]:
    """The caption to store for the model's answer ``raw``, and whether the answer was usable (False: the default
    caption, because cleaning left no description — gibberish or a refusal). Always: the trigger word exactly once,
    printable text, at most ``TARGET_LENGTH`` characters."""
    text = clean_text(raw)
    if not keep_traits:
        text = drop_traits(text)
    # Room for "a photo of TRIGGER, " so that the finished caption stays within the target.
    text = _bound(text, TARGET_LENGTH - len(trigger) - 16)
    if _real_words(text) < MIN_WORDS or _REFUSAL.match(text):
        return default_caption(trigger), False
    caption = with_trigger(text, trigger)
    caption = caption[0].lower() + caption[1:]
    if trigger_count(caption, trigger) != 1 or len(caption) > TARGET_LENGTH:  # a rule above went wrong: be safe
        return default_caption(trigger), False
    return caption, True
