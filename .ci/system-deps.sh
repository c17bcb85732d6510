#!/usr/bin/env bash
# Debian packages the tests need: Mesa 25 (lavapipe Vulkan, for the WebGPU backend tests; bookworm's
# Mesa 22 is refused by Dawn) and Chromium (browser tests). Idempotent; safe to run on a dev machine.
set -euo pipefail
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: not root or not Debian; skipping (WebGPU/browser tests will skip)"; exit 0
fi
src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/convlens-backports.sources
if [ -f "$src" ] && [ ! -f "$bp" ]; then
  # Copy the machine's own Debian source (same mirror, same keyring), only the suite changes.
  awk 'BEGIN{RS="";ORS="\n\n"} /debian-security/ {next} {print}' "$src" \
    | sed -E 's/^Suites:.*/Suites: bookworm-backports/' > "$bp"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
apt-get install -y -qq chromium >/dev/null || echo "system-deps: chromium not installed"
