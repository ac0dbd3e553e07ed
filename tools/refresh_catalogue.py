"""Maintainer script: fill the model catalogue's sizes and sha256 from what the hub publishes (not used by the app).

    python tools/refresh_catalogue.py                 # show what differs from the hub
    python tools/refresh_catalogue.py --write         # write the hub's values into the catalogue
    python tools/refresh_catalogue.py --catalogue other.json --endpoint https://hf-mirror.example

Asks the hub once per repository and revision (``HfApi.get_paths_info(..., expand=True)``: each file's size and,
for LFS files, the sha256 of its content). A gated repository answers with a token that has accepted its licence
(huggingface_hub's own: ``HF_TOKEN`` or ``hf auth login``). Every value written names its source. A sha256 that
changed upstream is shown loudly: the file the app downloads is no longer the one it was checked against.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CATALOGUE = ROOT / "resources" / "models" / "catalogue.json"


def refresh(data: dict[str, Any], api: Any, today: str | None = None) -> list[str]:
    """Update ``data`` (a parsed catalogue) in place from the hub; returns one line per change."""
    stamp = today or date.today().isoformat()
    changes: list[str] = []
    for model in data.get("models", []):
        wanted: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for entry in model.get("files", {}).values():
            wanted[(entry["repo"], entry.get("revision", "main"))].append(entry)
        for (repo, revision), entries in wanted.items():
            infos = api.get_paths_info(repo, [e["path"] for e in entries], expand=True, revision=revision)
            by_path = {info.path: info for info in infos if hasattr(info, "size")}
            for entry in entries:
                info = by_path.get(entry["path"])
                if info is None:
                    changes.append(f"MISSING on the hub: {repo}@{revision}/{entry['path']}")
                    continue
                size = info.lfs.size if info.lfs is not None else info.size
                sha = info.lfs.sha256 if info.lfs is not None else None
                old_size, old_sha = entry.get("size"), entry.get("sha256")
                if old_sha and sha and old_sha != sha:
                    changes.append(f"SHA256 CHANGED: {repo}/{entry['path']}: {old_sha} -> {sha}")
                elif old_size is not None and old_size != size:
                    changes.append(f"size changed: {repo}/{entry['path']}: {old_size} -> {size}")
                elif old_size == size and old_sha == sha:
                    continue
                else:
                    changes.append(f"filled: {repo}/{entry['path']}: size {size}, sha256 {sha}")
                entry["size"], entry["sha256"] = size, sha
                entry["source"] = (f"the hub's paths-info API for {repo}@{revision}, {stamp}"
                                   + ("" if sha else " (not an LFS file: no sha256 published)"))
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--endpoint", help="a hub mirror (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--write", action="store_true", help="write the hub's values into the catalogue")
    args = parser.parse_args(argv)

    from huggingface_hub import HfApi

    data = json.loads(args.catalogue.read_text(encoding="utf-8"))
    changes = refresh(data, HfApi(endpoint=args.endpoint))
    for line in changes:
        sys.stdout.write(line + "\n")
    if not changes:
        sys.stdout.write("The catalogue matches the hub.\n")
    elif args.write:
        args.catalogue.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        sys.stdout.write(f"Wrote {args.catalogue}.\n")
    return 1 if any(line.startswith(("SHA256 CHANGED", "MISSING")) for line in changes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
