"""Maintainer script: record the node-pack definitions the workflow tests validate against, from a real ComfyUI.

    ISENGARD_COMFYUI_DIR=VOL/engines/comfyui/src ISENGARD_COMFYUI_PYTHON=VOL/engines/comfyui/venv/bin/python \\
        .venv/bin/python tools/record_object_info.py [--custom-nodes DIR] [--out FILE]

Starts ComfyUI through the app's own supervisor on a temporary volume whose ``custom_nodes`` links the pinned packs
of an install made by ``isengard engines install comfyui`` (default: ``<ISENGARD_COMFYUI_DIR>/../base/custom_nodes``),
asks ``GET /object_info`` and writes the classes the pins name for each pack (``custom_nodes.*.nodes`` in
vendor/VENDOR_PINS.json) to ``tests/engines/comfyui/fixtures/object_info_custom.json``, with the pack commits it was
recorded at. Model lists are what that server saw: empty model folders (the tests add the file names they use).
Fails, writing nothing, when a pack is not at its pinned commit or one of its classes is not served.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "engines" / "comfyui" / "fixtures" / "object_info_custom.json"


def pack_commits(custom_nodes: Path) -> dict[str, str]:
    """The commit each pack was installed at, from the install record beside ``base/`` (engines install)."""
    record = custom_nodes.parent.parent / "install.json"
    return json.loads(record.read_text(encoding="utf-8")).get("custom_nodes", {}) if record.is_file() else {}


def record(custom_nodes: Path, timeout: float = 300) -> dict:
    from engines.comfyui.client import ComfyUIClient
    from engines.comfyui.supervisor import ComfyUISupervisor
    from isengard_desktop.core.engines_status import pins

    wanted = {pack: entry for pack, entry in pins()["custom_nodes"].items() if entry.get("engine") == "comfyui"}
    installed = pack_commits(custom_nodes)
    wrong = [f"{pack} is at {installed.get(pack)}, the pin is {entry['commit']}" for pack, entry in wanted.items()
             if installed.get(pack) != entry["commit"]]
    if wrong:
        raise SystemExit("record_object_info: " + "; ".join(wrong) + " (reinstall ComfyUI with its packs)")
    volume = Path(tempfile.mkdtemp(prefix="isengard-object-info-"))
    linked = volume / "engines" / "comfyui" / "base" / "custom_nodes"
    linked.mkdir(parents=True)
    for top in {entry["directory"].split("/")[0] for entry in wanted.values()}:
        (linked / top).symlink_to(custom_nodes / top, target_is_directory=True)
    supervisor = ComfyUISupervisor(volume)
    supervisor.start()
    try:
        deadline = time.monotonic() + timeout
        while supervisor.status().state == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
        status = supervisor.status()
        if status.state != "ready":
            raise SystemExit(f"record_object_info: ComfyUI did not start: {status.detail}")
        info = ComfyUIClient(status.url).object_info()
    finally:
        supervisor.stop()
    out: dict = {}
    missing = []
    for pack, entry in sorted(wanted.items()):
        for node in entry["nodes"]:
            if node in info:
                out[node] = info[node]
            else:
                missing.append(f"{node} ({pack})")
    if missing:
        raise SystemExit("record_object_info: ComfyUI does not serve " + ", ".join(missing) +
                         f"; see {volume / 'logs' / 'comfyui.log'}")
    commits = ", ".join(f"{pack} {installed[pack][:8]}" for pack in sorted(wanted))
    out["_source"] = (f"GET /object_info of ComfyUI {pins()['engines']['comfyui']['commit']} with the pinned packs "
                      f"loaded ({commits}), recorded by tools/record_object_info.py; model folders were empty.")
    return dict(sorted(out.items()))


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from engines.comfyui.paths import locate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--custom-nodes", type=Path, help="the install's base/custom_nodes folder")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    located = locate()
    if isinstance(located, str):
        raise SystemExit(f"record_object_info: {located}")
    custom_nodes = (args.custom_nodes or located[0].parent / "base" / "custom_nodes").resolve()
    data = record(custom_nodes)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    sys.stderr.write(f"wrote {len(data) - 1} node definitions to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
