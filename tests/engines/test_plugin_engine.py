"""An engine added with one package and an entry point, and no edit anywhere else in the app.

tests/engines/plugin_engine/ is a separate package (its own pyproject.toml) declaring ``echo`` in the
``isengard.engines`` entry-point group. It is pip-installed into a folder of its own, which is put on the path the
way an installed package would be; then the registry, the contract's checks and the real ``isengard`` command
(its worker subprocess included) find and run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from engines import registry
from isengard_desktop.core.engines import engine_context, list_engines
from isengard_desktop.storage.volume import Volume
from tests.engines.test_conformance import assert_conforms

PACKAGE = Path(__file__).parent / "plugin_engine"
INSTALLED = Path(sys.executable).parent / "isengard"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed by pip into a site folder of its own (from a copy: a build leaves files behind)."""
    source = tmp_path_factory.mktemp("plugin_source") / "plugin_engine"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    site = tmp_path_factory.mktemp("plugin_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(source)], check=True, timeout=300)
    assert (next(site.glob("*.dist-info")) / "entry_points.txt").read_text().count("isengard.engines") == 1
    return site


@pytest.fixture
def plugin_on_path(plugin_site: Path) -> Iterator[Path]:
    sys.path.insert(0, str(plugin_site))
    registry.refresh()
    try:
        yield plugin_site
    finally:
        sys.path.remove(str(plugin_site))
        for module in [m for m in sys.modules if m.startswith("isengard_echo_engine")]:
            del sys.modules[module]
        registry.refresh()


def test_the_registry_finds_the_plugin_and_it_keeps_the_contract(plugin_on_path: Path, tmp_path: Path) -> None:
    assert "echo" in registry.engine_specs() and registry.names("image")[-1] == "echo"  # rank 95: offered last
    volume = Volume.open(tmp_path / "volume")
    context = engine_context(volume, "echo")
    engine = registry.load_image("echo", context)
    assert_conforms(engine, context)
    # What the Generate tab lists (ui/generate_tab.py asks the same function): the plugin, ready, by its title.
    listed = {info.name: info for info in list_engines(volume, "image")}
    assert listed["echo"].title == "Echo (test plugin)" and listed["echo"].availability.available


def test_isengard_generate_runs_the_plugin_in_its_worker(plugin_on_path: Path, tmp_path: Path) -> None:
    from isengard_echo_engine import colour  # the plugin's rule: one colour per seed

    path_env = os.pathsep.join(filter(None, [str(plugin_on_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path_env,
           "ISENGARD_MODE": "fast-test"}
    volume = tmp_path / "volume"
    out = subprocess.run([str(INSTALLED), "--volume", str(volume), "generate", "--engine", "echo", "--prompt",
                          "a red door", "--seed", "7", "--batch", "2", "--json"],
                         capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["engine"] == "echo" and result["state"] == "succeeded" and len(result["images"]) == 2
    for seed, path in zip((7, 8), result["images"], strict=True):
        with Image.open(path) as image:
            assert image.size == (64, 64)  # fast-test's size for 1:1, from the app's request
            assert image.getpixel((10, 10)) == colour(seed), "the worker ran the plugin's generate for this seed"

    unknown = subprocess.run([str(INSTALLED), "--volume", str(volume), "generate", "--engine", "nope", "--prompt",
                              "x"], capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert unknown.returncode != 0 and "echo" in unknown.stderr and "Traceback" not in unknown.stderr
