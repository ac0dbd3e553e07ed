"""Run every issue-14 benchmark and print one table: figure, reference, ratio, target, met or not.

Each figure is measured against its reference in the same run (interleaved, medians), so the ratios hold on a
loaded machine better than the absolute times do. The README's benchmark table is this table.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python bench/run_all.py [--quick] [--markdown]

--quick: fewer repeats (a smoke run, noisier). ComfyUI's row needs ISENGARD_COMFYUI_DIR/_PYTHON (else skipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _target(row: dict) -> str:
    parts = []
    if row.get("max_figure") is not None:
        parts.append(f"≤ {row['max_figure']:g} {row['unit']}")
    if row.get("max_ratio") is not None:
        parts.append(f"≤ {row['max_ratio']:g}×")
    return " and ".join(parts)


def _met(row: dict) -> bool:
    ok = row.get("max_figure") is None or row["figure"] <= row["max_figure"]
    return ok and (row.get("max_ratio") is None or row["figure"] / row["reference"] <= row["max_ratio"])


def table(rows: list[dict], markdown: bool) -> str:
    head = ("Figure", "Measured", "Reference", "Ratio", "Target", "Met")
    lines = []
    for row in rows:
        if "skipped" in row:
            lines.append((row["name"], "—", "—", "—", "", f"skipped: {row['skipped']}"))
            continue
        unit = row["unit"]
        digits = 1 if unit == "ms" else 2 if row["figure"] >= 1 else 3
        lines.append((row["name"], f"{row['figure']:.{digits}f} {unit}",
                      f"{row['reference']:.{digits}f} {unit} ({row['reference_name']})",
                      f"{row['figure'] / row['reference']:.2f}×", _target(row), "yes" if _met(row) else "NO"))
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (the README's)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["startup", "stall", "train", "comfyui"])
    args = parser.parse_args()
    import comfyui_overhead
    import startup
    import startup_stall
    import train_overhead

    quick = args.quick
    benches = {
        "startup": lambda: startup.measure(3 if quick else 7),
        "stall": lambda: startup_stall.measure(3 if quick else 5),
        "train": lambda: train_overhead.measure(200, 1 if quick else 15),
        "comfyui": lambda: comfyui_overhead.measure(2 if quick else 9, 60),
    }
    rows: list[dict] = []
    for name, bench in benches.items():
        if name in args.skip:
            continue
        print(f"running {name}…", file=sys.stderr, flush=True)
        rows += bench()
    print(table(rows, args.markdown))
    notes = [f"- {row['name']}: {row['note']}" for row in rows if row.get("note")]
    spreads = [f"- {row['name']}: runs {row['spread'][0]:.2f}–{row['spread'][1]:.2f} {row['unit']}"
               for row in rows if row.get("spread")]
    print("\n".join(["", *notes, *spreads]))


if __name__ == "__main__":
    main()
