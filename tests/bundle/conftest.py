"""The bundle's smoke test builds or runs the PyInstaller bundle (minutes): it runs only when asked for with
``-m bundle`` (``.venv/bin/pytest -m bundle tests/bundle``), never in the default suite.

``ISENGARD_BUNDLE_DIR=dist/isengard-desktop`` uses a bundle already built instead of building one (~4 minutes).
``ISENGARD_BUNDLE_ENGINES=/path/to/engines`` (a folder of engine snapshots: aitoolkit/, comfyui/ and the node
packs) also installs AI-Toolkit and ComfyUI from the bundle (about 5 minutes more with a warm pip cache, 15 cold).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "bundle" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="builds and runs the installer bundle (minutes): run with -m bundle")
    for item in items:
        if item.get_closest_marker("bundle") is not None:
            item.add_marker(skip)
