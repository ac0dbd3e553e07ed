"""Structured JSON logging (structlog) with a correlation id on every line, and secret redaction.

``configure(volume_logs_dir)`` sends JSON lines to the volume's daily app log and, for the CLI,
warnings to stderr (never to stdout, which carries ``--json`` results). ``correlation(...)`` binds
a fresh correlation id for one user action or job; worker processes receive it through the
``ISENGARD_CORRELATION_ID`` environment variable and bind it again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

CORRELATION_ENV = "ISENGARD_CORRELATION_ID"

# Whole words of a key ("hf_token", "api_key"), so that "tokens" (a count) is not taken for a secret.
_SECRET_KEYS = re.compile(r"(?:^|_)(token|secret|password|passwd|authorization|api_?key|cookie)(?:$|_)", re.I)
# Known shapes of credentials, wherever they appear. Each keeps what comes before the secret itself.
_SECRET_VALUES = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{10,}"  # Hugging Face
    r"|sk-[A-Za-z0-9_-]{10,}"  # OpenAI-style (sk-..., sk-proj-...)
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{20,}"  # GitHub fine-grained tokens
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"  # a JSON web token
)
# "Authorization: Basic dXNlcjpwYXNz", "Bearer abc...": the scheme stays, the credential goes.
_AUTH_SCHEMES = re.compile(r"\b(Bearer|Basic|Token|Digest)(\s+)[A-Za-z0-9._~+/=-]{6,}", re.I)
# user:password@ in a URL.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")
# key=value, key: value, "key": "value" where the key names a secret (hf_token, password, API_KEY, ...).
_KEY_VALUE = re.compile(
    # The lookbehind starts a key only where a word starts: without it every position of a long run of word
    # characters (a hash, base64) is tried again with backtracking, quadratic time (a debug bundle hung on it).
    r"""(?<![A-Za-z0-9_.-])(?P<key>[A-Za-z0-9_.-]*(?:token|secret|password|passwd|pwd|api_?key|apikey|key|auth|authorization"""
    r"""|credentials?|cookie)\b)(?P<close>["']?)(?P<sep>\s*[:=]\s*)(?:(?P<quote>["'])(?P<quoted>[^"'\n]*)(?P=quote)"""
    r"""|(?P<bare>[^\s"',;&}\]]+))""",
    re.I,
)
REDACTED = "[redacted]"
_NOT_SECRET = {"", "null", "none", "false", "true", "basic", "bearer", "token", "digest"}


def _key_value(match: re.Match[str]) -> str:
    key = match.group("key")
    value = match.group("quoted") if match.group("quote") else match.group("bare")
    # Nothing to hide (empty, null, already redacted), or an authorization scheme whose credential the
    # scheme pattern has already replaced ("Authorization: Basic [redacted]").
    if value.lower() in _NOT_SECRET or value.startswith("[redacted"):
        return match.group(0)
    quote = match.group("quote") or ""
    return f"{key}{match.group('close')}{match.group('sep')}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Replace anything that looks like a secret in free text: known token shapes, credentials after an
    authorization scheme or in a URL, and the value of any key=value (or "key": "value") whose key names a
    secret."""
    text = _SECRET_VALUES.sub(REDACTED, text)
    text = _AUTH_SCHEMES.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _URL_CREDENTIALS.sub(f"{REDACTED}@", text)
    return _KEY_VALUE.sub(_key_value, text)


def _redact(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


def _ensure_correlation(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("correlation_id", os.environ.get(CORRELATION_ENV, "app"))
    return event_dict


class _DailyFileHandler(logging.Handler):
    """Appends to ``app-YYYY-MM-DD.jsonl``, switching file when the day changes."""

    def __init__(self, logs_dir: Path) -> None:
        super().__init__()
        self.logs_dir = logs_dir
        self._day = ""
        self._stream: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        day = datetime.now().strftime("%Y-%m-%d")
        try:
            if day != self._day or self._stream is None:
                if self._stream:
                    self._stream.close()
                self.logs_dir.mkdir(parents=True, exist_ok=True)
                self._stream = open(self.logs_dir / f"app-{day}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
                self._day = day
            self._stream.write(record.getMessage() + "\n")
            self._stream.flush()
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        if self._stream:
            self._stream.close()
            self._stream = None
        super().close()


# Sentences for warnings a person meets on the CLI, by event name; any other event gets a generic sentence.
SENTENCES = {
    "engine_source_files_missing": "{count} file(s) of the {engine} source could not be read from its snapshot "
                                   "({files}); the install went on without them.",
}
_NOT_FOR_PEOPLE = {"event", "timestamp", "level", "logger", "correlation_id", "action", "exc_info", "exception"}


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        shown = ", ".join(str(item) for item in value[:3])
        return shown + (f" and {len(value) - 3} more" if len(value) > 3 else "")
    return str(value)


def sentence(event: dict[str, Any]) -> str:
    """One line a person can read for a structured log event (the CLI's stderr without ``-v``)."""
    fields = {key: _short(value) for key, value in event.items() if key not in _NOT_FOR_PEOPLE}
    name = str(event.get("event", "warning"))
    if name in SENTENCES:
        try:
            return SENTENCES[name].format(**fields)
        except (KeyError, IndexError, ValueError):
            pass
    if isinstance(event.get("message"), str):
        return event["message"]
    text = name.replace("_", " ").capitalize()
    details = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in fields.items())
    return f"{text} ({details})." if details else f"{text}."


class _PersonFormatter(logging.Formatter):
    """Renders the JSON line structlog made as one sentence: the CLI's stderr is for people (issue 15 item 7)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        try:
            event = json.loads(text)
        except ValueError:
            return text
        if not isinstance(event, dict):
            return text
        prefix = "warning: " if record.levelno == logging.WARNING else ""
        return f"isengard: {prefix}{sentence(event)}".replace("\n", " ")


def configure(logs_dir: Path | None, *, stderr_level: int = logging.WARNING, file_level: int = logging.INFO,
              stderr_for_people: bool = False) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again (e.g. after the volume changes).

    ``stderr_for_people``: stderr gets one sentence per event instead of its JSON line (the CLI without ``-v``;
    the JSON still goes to the log file).
    """
    shared = [
        structlog.contextvars.merge_contextvars,
        _ensure_correlation,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_isengard", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(min(stderr_level, file_level))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(stderr_level)
    if stderr_for_people:
        stderr.setFormatter(_PersonFormatter())
    stderr._isengard = True  # type: ignore[attr-defined]
    root.addHandler(stderr)
    if logs_dir is not None:
        handler = _DailyFileHandler(logs_dir)
        handler.setLevel(file_level)
        handler._isengard = True  # type: ignore[attr-defined]
        root.addHandler(handler)


@contextmanager
def correlation(action: str, correlation_id: str | None = None, **context: Any) -> Iterator[str]:
    """Bind a correlation id (and context) for one user action or job; yields the id."""
    cid = correlation_id or new_correlation_id()
    with structlog.contextvars.bound_contextvars(correlation_id=cid, action=action, **context):
        yield cid
