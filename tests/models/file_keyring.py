"""A keyring backend over one JSON file, for tests only: it works across processes (the download worker reads
the token itself) and never touches the real keyring of the person running the tests.

Selected with ``PYTHON_KEYRING_BACKEND=tests.models.file_keyring.FileKeyring``; the file is
``$ISENGARD_TEST_KEYRING``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

ENV = "ISENGARD_TEST_KEYRING"


class FileKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        """Chosen only where a test asked for it: keyring registers every imported backend class and, in a process
        where this one was imported, would otherwise pick it for later tests too (the best it finds beats the
        'fail' backend of a machine without a desktop keyring): KeyError ISENGARD_TEST_KEYRING in those tests."""
        return 1 if ENV in os.environ else -1

    @property
    def _file(self) -> Path:
        return Path(os.environ[ENV])

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self._file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\0{username}"] = password
        self._file.write_text(json.dumps(data), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError(username)
        self._file.write_text(json.dumps(data), encoding="utf-8")
