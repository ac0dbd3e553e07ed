#!/bin/sh
# Install Isengard Desktop for the current user (no root): the app folder under $XDG_DATA_HOME, an entry in the
# application menu, its icon, and `isengard` on PATH (~/.local/bin). Run from the unpacked tarball:
#   tar xzf isengard-desktop-*-linux-x86_64.tar.gz && ./isengard-desktop/install.sh
# `./install.sh --uninstall` (or the copy left at $XDG_DATA_HOME/isengard-desktop/install.sh) removes it again;
# volumes (your characters, photos, LoRAs) are never touched.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
app="$data/isengard-desktop"
bin="$HOME/.local/bin"
entry="$data/applications/isengard-desktop.desktop"
icons="$data/icons/hicolor"

refresh() {
    # Menus pick new entries up by themselves on most desktops; these caches make it immediate where they exist.
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons" || true
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$entry" "$icons/256x256/apps/isengard-desktop.png" "$icons/scalable/apps/isengard-desktop.svg"
    [ -L "$bin/isengard" ] && rm -f "$bin/isengard"
    case "$here" in "$app") cd / ;; esac
    rm -rf "$app"
    refresh
    echo "Isengard Desktop is uninstalled (your volumes are untouched)."
    exit 0
fi

[ -x "$here/isengard" ] || { echo "install.sh: run it from the unpacked isengard-desktop folder" >&2; exit 1; }
if [ "$here" != "$app" ]; then
    mkdir -p "$data"
    rm -rf "$app.new"
    cp -a "$here" "$app.new"  # copy then swap: a failed copy leaves a previous install working
    rm -rf "$app"
    mv "$app.new" "$app"
fi
desktop="$app/_internal/resources/desktop"
mkdir -p "$data/applications" "$icons/256x256/apps" "$icons/scalable/apps" "$bin"
sed -e "s|@EXEC@|\"$app/isengard\"|g" -e "s|@PATH@|$app/isengard|g" "$desktop/isengard-desktop.desktop" > "$entry"
chmod 644 "$entry"
cp "$desktop/isengard-desktop.png" "$icons/256x256/apps/isengard-desktop.png"
cp "$desktop/isengard-desktop.svg" "$icons/scalable/apps/isengard-desktop.svg"
ln -sfn "$app/isengard" "$bin/isengard"
refresh
echo "Isengard Desktop is installed: open it from the application menu, or run 'isengard' ($bin is on PATH on"
echo "most desktops). To remove it: $app/install.sh --uninstall"
