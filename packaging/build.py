"""Build the double-click bundle: ``python packaging/build.py [--tarball]`` from the repository root.

Runs PyInstaller on build_installer.spec (dist/isengard-desktop/, or dist/Isengard Desktop.app on macOS), puts
the per-user install script beside the executable on Linux, and with ``--tarball`` packs
dist/isengard-desktop-<version>-linux-<arch>.tar.gz. Prints the build time and the bundle's size.

Linux ships as a tarball with an install script, not an AppImage: appimagetool and its runtime are downloaded
from GitHub, which this project's machines cannot reach; an AppImage would also have to unpack or FUSE-mount
1 GB on every start. The tarball installs per user into the XDG places (install.sh) without root.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
BUNDLE = DIST / "isengard-desktop"


def folder_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


def build() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                    str(ROOT / "build_installer.spec")], cwd=ROOT, check=True)
    if sys.platform.startswith("linux"):
        shutil.copy2(ROOT / "packaging" / "install.sh", BUNDLE / "install.sh")
    return time.monotonic() - start


def tarball() -> Path:
    sys.path.insert(0, str(ROOT))
    from isengard_desktop import __version__

    target = DIST / f"isengard-desktop-{__version__}-linux-{platform.machine()}.tar.gz"
    # gzip -1: tar.gz is what every Linux desktop opens; the torch libraries barely compress harder at -9.
    subprocess.run(["tar", "-C", str(DIST), "-I", "gzip -1", "-cf", str(target), BUNDLE.name], check=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", action="store_true", help="also pack the Linux tarball")
    args = parser.parse_args()
    seconds = build()
    sys.stdout.write(f"built {BUNDLE} in {seconds:.0f} s, {folder_size(BUNDLE) / 1e6:.0f} MB\n")
    if args.tarball and sys.platform.startswith("linux"):
        target = tarball()
        sys.stdout.write(f"packed {target}, {target.stat().st_size / 1e6:.0f} MB\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
