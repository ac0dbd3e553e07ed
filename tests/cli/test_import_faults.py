"""Issue 11 items 3, 7 and 8: imports under faults, with real CLI processes.

Two imports racing into one character, an import killed with SIGKILL (its pool workers must die with it,
its stored-but-unrecorded files are collected at the next start), and the small ones: exit codes, linked
folders, named pipes, newlines in file names.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from isengard_desktop.core.importer import LINKED_FOLDER, POOL_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]


def cli(volume: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args]


def isengard(volume: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(volume, *args), capture_output=True, text=True, timeout=180, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def make_photos(folder: Path, count: int, side: int = 700) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo {i:03d}.png"
        # Noise, so that each photo takes a moment to decode and the imports overlap.
        Image.effect_noise((side, side), 40 + i).convert("RGB").save(path)
        paths.append(path)
    return paths


def stored_files(volume: Path) -> set[str]:
    return {p.relative_to(volume).as_posix() for p in (volume / "images").glob("*/*") if not p.name.startswith(".")}


def rows(volume: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(volume / "isengard.db") as conn:
        return conn.execute("SELECT character_id, rel_path FROM images").fetchall()


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    vol = tmp_path / "vol"
    assert isengard(vol, "characters", "create", "Ada", "--trigger", "ohwx_ada").returncode == 0
    return vol


def test_two_imports_into_one_character_at_once_both_finish(volume: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in", 2 * POOL_THRESHOLD)
    procs = [subprocess.Popen(cli(volume, "dataset", "import", "Ada", str(tmp_path / "in"), "--json"), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err
    reports = [json.loads(out) for out, _err in outputs]  # stdout stays pure JSON
    names = {p.name for p in photos}
    imported = [{Path(i["file"]).name for i in r["imported"]} for r in reports]
    duplicates = [{Path(d["file"]).name for d in r["duplicates"]} for r in reports]
    assert imported[0] | imported[1] == names and not imported[0] & imported[1]
    assert imported[0] == duplicates[1] and imported[1] == duplicates[0], "what the other took first is a duplicate"
    recorded = rows(volume)
    assert len(recorded) == len(photos)
    assert stored_files(volume) == {rel for _c, rel in recorded}, "no stored file is left without its row"


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_import_leaves_no_worker_and_its_files_are_collected_at_next_start(volume: Path,
                                                                                     tmp_path: Path) -> None:
    make_photos(tmp_path / "in", 40, side=900)
    proc = subprocess.Popen(cli(volume, "dataset", "import", "Ada", str(tmp_path / "in"), "--json"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    try:
        # Kill while the pool works and some stored files have no row yet (rows are written in batches).
        while time.monotonic() < deadline and proc.poll() is None:
            workers = descendants(proc.pid) or workers
            if len(workers) >= 2 and len(stored_files(volume)) > len(rows(volume)):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the import ended before it could be killed"
        workers = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"pool workers outlived the killed import: {[p.pid for p in alive]}"
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
    assert list((volume / "images").glob(".import-*.running")), "the killed import left its marker"
    unrecorded = stored_files(volume) - {rel for _c, rel in rows(volume)}

    listed = isengard(volume, "dataset", "list", "--json")  # the next start
    assert listed.returncode == 0, listed.stderr
    assert stored_files(volume) == {rel for _c, rel in rows(volume)}, "every stored file has its row again"
    assert not list((volume / "images").glob(".import-*.running"))
    assert not list((volume / "images").rglob("*.tmp")), "half-written copies are removed"
    manifests = list((volume / "trash").glob("*unfinished-import*/manifest.json"))
    if unrecorded:
        assert len(manifests) == 1
        manifest = json.loads(manifests[0].read_text())
        assert {f["rel_path"] for f in manifest["files"]} >= unrecorded
        for entry in manifest["files"]:
            assert (manifests[0].parent / "images" / Path(entry["rel_path"]).name).is_file()


def test_exit_codes_missing_paths_pipes_and_linked_folders(volume: Path, tmp_path: Path) -> None:
    missing = isengard(volume, "dataset", "import", "Ada", str(tmp_path / "nowhere.jpg"), "--json")
    assert missing.returncode != 0, "nothing imported and a path missing: a script must notice"
    assert json.loads(missing.stdout)["refused"][0]["reason"] == "there is no such file or folder"

    folder = tmp_path / "in"
    make_photos(folder, 1)
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(folder / "pipe inside.jpg")
    (tmp_path / "elsewhere").mkdir()
    make_photos(tmp_path / "elsewhere", 1, side=650)
    (folder / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    done = isengard(volume, "dataset", "import", "Ada", str(folder), str(tmp_path / "pipe.jpg"), "--json")
    assert done.returncode == 0, done.stderr  # something was imported
    report = json.loads(done.stdout)
    refused = {Path(r["file"]).name: r["reason"] for r in report["refused"]}
    assert "not a regular file" in refused["pipe.jpg"] and "not a regular file" in refused["pipe inside.jpg"]
    assert refused["linked"] == LINKED_FOLDER
    assert [Path(i["file"]).name for i in report["imported"]] == ["photo 000.png"]

    again = isengard(volume, "dataset", "import", "Ada", str(folder / "photo 000.png"))
    assert again.returncode == 0 and "already there" in again.stdout, "all duplicates is not a failure"
    only_refused = isengard(volume, "dataset", "import", "Ada", str(tmp_path / "pipe.jpg"))
    assert only_refused.returncode != 0 and "not a regular file" in only_refused.stdout


def test_a_newline_in_a_file_name_keeps_one_line_per_image(volume: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (600, 600), "red").save(folder / "line one\nline\ttwo.png")
    Image.new("RGB", (600, 600), "blue").save(folder / "plain.png")
    assert isengard(volume, "dataset", "import", "Ada", str(folder)).returncode == 0
    listed = isengard(volume, "dataset", "list")
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all(len(line.split("\t")) == 5 for line in lines)
    assert "line one\\nline\\ttwo.png" in listed.stdout
