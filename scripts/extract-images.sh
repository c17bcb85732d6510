#!/usr/bin/env bash
# Extracts the content/style/texture images for the default report from Debian packages
# (data only: `apt-get download` + `dpkg-deb -x` into a temp dir, nothing is installed),
# resizes them with sharp and writes them under assets/images/.
# The resized files are committed, so a fresh (non-Debian) machine never needs this script.
# Licences: see assets/images/LICENSES.md (checked against each package's
# copyright file, copied next to the images as <package>.copyright).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/assets/images"
size="${SIZE:-256}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"
cd "$tmp"

# package -> files (paths inside the package) -> output names
apt-get download python3-skimage darknet
for deb in *.deb; do dpkg-deb -x "$deb" x; done

sk="$(find x -type d -path '*skimage/data' | head -1)"
dk="$(find x -type f -name 'scream.jpg' | head -1)"
[ -n "$sk" ] || { echo "skimage data folder not found" >&2; exit 1; }

pairs=(
  "$sk/brick.png:brick.png"
  "$sk/grass.png:grass.png"
  "$sk/gravel.png:gravel.png"
  "$sk/chelsea.png:chelsea.png"
  "$sk/coffee.png:coffee.png"
  "$sk/astronaut.png:astronaut.png"
)
[ -n "$dk" ] && pairs+=("$dk:scream.png")

for p in "${pairs[@]}"; do
  src="${p%%:*}"; out="${p##*:}"
  # shorter side to $size (centre crop to a square), sRGB, 3 channels
  node -e '
    const [src, out, size, root] = process.argv.slice(1);
    const sharp = require(require.resolve("sharp", { paths: [root] }));
    sharp(src).removeAlpha().toColourspace("srgb").resize(+size, +size, { fit: "cover" })
      .png({ compressionLevel: 9 }).toFile(out).then(() => console.log("wrote", out));
  ' "$src" "$dest/$out" "$size" "$root"
done

# keep the packages' licence statements next to the images
cp "$(find x -path '*doc/python3-skimage/copyright' | head -1)" "$dest/python3-skimage.copyright" || true
cp "$(find x -path '*doc/darknet/copyright' | head -1)" "$dest/darknet.copyright" || true
ls -l "$dest"
