"""Smoke test of the installer bundle, run as a new user would: no project venv, no Python on PATH, a fresh HOME.

    .venv/bin/pytest -m bundle tests/bundle                          # builds the bundle first (~4 minutes)
    ISENGARD_BUNDLE_DIR=dist/isengard-desktop .venv/bin/pytest -m bundle tests/bundle   # uses a built one

The tests share one volume and run in file order: the fast-test story through the bundle's CLI (character,
photos, a tiny LoRA, an image with it, a training cancelled with Ctrl+C and resumed). With
``ISENGARD_BUNDLE_ENGINES`` set to a folder of engine snapshots, AI-Toolkit (then a few steps with it) and ComfyUI
with its node packs (then the window starts and stops it) are also installed by the bundle: ~5-15 minutes more.
Under a display (``xvfb-run``) the window test saves a real screenshot to ``ISENGARD_BUNDLE_SHOTS`` (default
bench/out/).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.bundle

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300


@pytest.fixture(scope="module")
def bundle() -> Path:
    given = os.environ.get("ISENGARD_BUNDLE_DIR")
    if given:
        folder = Path(given).resolve()
    else:
        if shutil.which("pyinstaller", path=str(Path(sys.executable).parent)) is None:
            pytest.skip("PyInstaller is not installed: pip install -e '.[bundle]'")
        subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], cwd=ROOT, check=True, timeout=1800)
        folder = ROOT / "dist" / "isengard-desktop"
    assert (folder / "isengard").is_file(), f"no bundle at {folder}"
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A temporary HOME, a volume, and a PATH of the system's tools without any python or pip."""
    base = tmp_path_factory.mktemp("bundle")
    tools = base / "bin"
    tools.mkdir()
    for folder in ("/usr/bin", "/bin"):
        for entry in Path(folder).iterdir():
            if not entry.name.startswith(("python", "pip", "pydoc")) and not (tools / entry.name).exists():
                (tools / entry.name).symlink_to(entry)
    (base / "home").mkdir()
    return {"base": base, "tools": tools, "home": base / "home", "volume": base / "volume"}


def clean_env(world: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {"PATH": str(world["tools"]), "HOME": str(world["home"]), "LANG": "C.UTF-8",
           "QT_QPA_PLATFORM": "offscreen"}
    env.update(extra)
    return env


def finish_first_run(volume: Path, **more: object) -> None:
    """What pressing Skip on the first-run page records: the window opens on its tabs next time."""
    path = volume / "settings.json"
    settings = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    path.write_text(json.dumps({**settings, "first_run_done": True, **more}), encoding="utf-8")


def run(bundle: Path, world: dict[str, Path], *args: str, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(bundle / "isengard"), "--volume", str(world["volume"]), *args], capture_output=True,
                          text=True, env=env or clean_env(world), timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"isengard {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def test_version_without_python(bundle: Path, world: dict[str, Path]) -> None:
    assert shutil.which("python3", path=str(world["tools"])) is None
    out = subprocess.run([str(bundle / "isengard"), "--version"], capture_output=True, text=True,
                         env=clean_env(world), timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "isengard 0.1.0"


def test_doctor_asks_the_bundles_own_torch(bundle: Path, world: dict[str, Path]) -> None:
    """Doctor runs `sys.executable -c ...` to ask the app's torch: in the bundle that is `isengard -c`."""
    out = run(bundle, world, "doctor", check=False)
    line = next(row for row in out.stdout.splitlines() if "PyTorch (app)" in row)
    assert line.startswith("ok") and "torch 2." in line, out.stdout


def _photos(folder: Path) -> Path:
    """Twelve photos: past the importer's threshold, so its spawn process pool runs through the bundle too."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        image = Image.new("RGB", (512, 640), (30 + 15 * i, 120, 200 - 10 * i))
        ImageDraw.Draw(image).ellipse((120 + 5 * i, 120, 380, 460), fill=(240, 200, 160))
        image.save(folder / f"ada-{i}.jpg", quality=92)
    return folder


def test_character_photos_training_and_generation(bundle: Path, world: dict[str, Path]) -> None:
    created = json.loads(run(bundle, world, "characters", "create", "Ada", "--trigger", "ohwx_ada", "--json").stdout)
    assert created["trigger_word"] == "ohwx_ada"
    report = json.loads(run(bundle, world, "dataset", "import", "Ada", str(_photos(world["base"] / "photos")),
                            "--json").stdout)
    assert len(report["imported"]) == 12, report

    started = time.monotonic()
    trained = json.loads(run(bundle, world, "train", "Ada", "--preset", "quick", "--steps", "6", "--save-every", "3",
                             "--json").stdout)
    (world["base"] / "first_training_s.txt").write_text(f"{time.monotonic() - started:.2f}\n")
    assert trained["state"] == "succeeded", trained
    lora = Path(trained["result"]["lora"])
    assert lora.is_file() and lora.stat().st_size > 0

    out = json.loads(run(bundle, world, "generate", "--prompt", "a photo of ohwx_ada", "--lora", "Ada:0.8",
                         "--engine", "diffusers", "--steps", "2", "--seed", "7", "--json").stdout)
    assert out["state"] == "succeeded" and len(out["images"]) >= 1
    assert all(Path(path).is_file() and Image.open(path).size[0] > 0 for path in out["images"])


def _events(proc: subprocess.Popen) -> Iterator[dict]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            yield json.loads(line)


def test_cancel_with_ctrl_c_then_resume(bundle: Path, world: dict[str, Path]) -> None:
    proc = subprocess.Popen([str(bundle / "isengard"), "--volume", str(world["volume"]), "train", "Ada", "--preset",
                             "quick", "--steps", "40", "--save-every", "2", "--json-events"], env=clean_env(world),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    job_id = None
    try:
        for event in _events(proc):
            job_id = event.get("job_id", job_id)
            if event.get("event") == "checkpoint":
                proc.send_signal(signal.SIGINT)  # Ctrl+C: the CLI asks the worker to save and stop
                break
        code = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 3, proc.stderr.read()[-2000:] if proc.stderr else code
    jobs = json.loads(run(bundle, world, "jobs", "list", "--json").stdout)
    stopped = [job for job in jobs if job["state"] in ("cancelled", "interrupted")]
    assert len(stopped) == 1, jobs
    job_id = stopped[0]["id"]
    assert 0 < stopped[0]["progress"]["step"] < 40

    resumed = json.loads(run(bundle, world, "jobs", "resume", str(job_id), "--json").stdout)
    assert resumed["state"] == "succeeded", resumed
    assert resumed["progress"]["step"] == 40


def test_window_shows_its_first_frame_on_a_new_volume(bundle: Path, world: dict[str, Path]) -> None:
    """A new user's first start: the window (its first-run page) on an empty volume."""
    env = clean_env(world, ISENGARD_EXIT_AFTER_SHOW="1")
    out = subprocess.run([str(bundle / "isengard"), "--volume", str(world["base"] / "new-volume")], capture_output=True,
                         text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert any(line.startswith("startup_s=") for line in out.stdout.splitlines()), out.stderr[-2000:]


def test_window_shows_the_trained_character(bundle: Path, world: dict[str, Path]) -> None:
    """The main window on the volume the CLI filled (first-run page finished)."""
    finish_first_run(world["volume"])
    out = run(bundle, world, env=clean_env(world, ISENGARD_EXIT_AFTER_SHOW="1"), timeout=60)
    assert any(line.startswith("startup_s=") for line in out.stdout.splitlines()), out.stderr[-2000:]


def test_window_loads_its_chart_library(bundle: Path, world: dict[str, Path]) -> None:
    """Reopened on the Training tab (where it was left), the window loads pyqtgraph for the loss chart at once:
    nothing may be missing for it in the bundle (a failed import shows as a traceback on stderr)."""
    finish_first_run(world["volume"], last_tab="Training")
    app = subprocess.Popen([str(bundle / "isengard"), "--volume", str(world["volume"])], env=clean_env(world),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(10)  # pyqtgraph takes ~0.5 s here; the rest is margin for a loaded machine
    app.send_signal(signal.SIGTERM)
    _, stderr = app.communicate(timeout=30)
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr[-3000:]


def test_window_screenshot_under_a_display(bundle: Path, world: dict[str, Path]) -> None:
    """Under xvfb-run: the real main window on an X server, captured from outside the app."""
    display = os.environ.get("DISPLAY")
    if not display:
        pytest.skip("no DISPLAY: run under xvfb-run for the screenshot")
    from PIL import ImageGrab

    env = clean_env(world, DISPLAY=display)
    env.pop("QT_QPA_PLATFORM")
    if os.environ.get("XAUTHORITY"):
        env["XAUTHORITY"] = os.environ["XAUTHORITY"]
    app = subprocess.Popen([str(bundle / "isengard"), "--volume", str(world["volume"])], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, shot = time.monotonic() + 60, None
        while time.monotonic() < deadline and app.poll() is None:
            time.sleep(1.0)
            shot = ImageGrab.grab(xdisplay=display)
            if len(shot.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20:  # more than a blank screen
                time.sleep(2.0)  # let the first tab finish drawing
                shot = ImageGrab.grab(xdisplay=display)
                break
        assert app.poll() is None, app.stderr.read()[-2000:] if app.stderr else ""
        folder = Path(os.environ.get("ISENGARD_BUNDLE_SHOTS", ROOT / "bench" / "out"))
        folder.mkdir(parents=True, exist_ok=True)
        shot.save(folder / "bundle-window.png")
        assert len(shot.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20, "the screen stayed blank"
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()


def test_engine_install_without_a_python_says_what_to_install(bundle: Path, world: dict[str, Path]) -> None:
    out = run(bundle, world, "engines", "install", "aitoolkit", "--source", str(world["base"]), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "needs Python 3.10 to 3.13 on this machine and none was found on PATH" in out.stderr


def test_engine_install_from_the_snapshots(bundle: Path, world: dict[str, Path]) -> None:
    """AI-Toolkit into the volume, by the bundle, with the system's Python (about 8 minutes here)."""
    engines = os.environ.get("ISENGARD_BUNDLE_ENGINES")
    if not engines:
        pytest.skip("set ISENGARD_BUNDLE_ENGINES to a folder of engine snapshots (aitoolkit/, comfyui/, node packs)")
    env = clean_env(world, PATH="/usr/bin:/bin", ISENGARD_CUSTOM_NODE_SOURCES=engines)
    run(bundle, world, "engines", "install", "aitoolkit", "--source", str(Path(engines) / "aitoolkit"), env=env,
        timeout=1800)
    status = {e["name"]: e for e in json.loads(run(bundle, world, "engines", "status", "--json", env=env).stdout)}
    assert status["aitoolkit"]["installed"] and status["aitoolkit"]["matches_pin"], status["aitoolkit"]
    assert status["aitoolkit"]["environment_ok"], status["aitoolkit"]
    # The bundle's worker drives AI-Toolkit's own Python: a few steps on the tiny model.
    trained = json.loads(run(bundle, world, "train", "Ada", "--engine", "aitoolkit", "--preset", "quick", "--steps",
                             "4", "--json", env=env).stdout)
    assert trained["state"] == "succeeded" and Path(trained["result"]["lora"]).is_file(), trained


def test_comfyui_installed_by_the_bundle_starts_with_the_window(bundle: Path, world: dict[str, Path]) -> None:
    """ComfyUI and its pinned node packs into the volume; the bundled window starts it on 127.0.0.1 and stops it."""
    engines = os.environ.get("ISENGARD_BUNDLE_ENGINES")
    if not engines:
        pytest.skip("set ISENGARD_BUNDLE_ENGINES to a folder of engine snapshots (aitoolkit/, comfyui/, node packs)")
    env = clean_env(world, PATH="/usr/bin:/bin", ISENGARD_CUSTOM_NODE_SOURCES=engines)
    run(bundle, world, "engines", "install", "comfyui", "--source", str(Path(engines) / "comfyui"), env=env,
        timeout=1800)
    finish_first_run(world["volume"])
    logs = world["volume"] / "logs"
    app = subprocess.Popen([str(bundle / "isengard"), "--volume", str(world["volume"])], env=clean_env(world),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def events() -> list[str]:
        found = []
        for path in logs.glob("app-*.jsonl"):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if '"comfyui_' in line:
                    found.append(json.loads(line)["event"])
        return found

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "comfyui_ready" not in events() and app.poll() is None:
            time.sleep(1.0)
        assert "comfyui_ready" in events(), events()
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=60)
    assert "comfyui_stopping" in events()
