#!/usr/bin/env bash
# Installs a software WebGPU adapter for CI: Mesa's lavapipe (Vulkan on the CPU) from Debian bookworm-backports, then
# prints the environment that points the Vulkan loader at it:  eval "$(bash .ci/software-gpu.sh)"
# Dawn needs Mesa 25 or newer (Debian 12's own Mesa 22 lacks a feature it requires). Needs root the first time.
set -euo pipefail
icd() { ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -1; }
recent_mesa() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -Eq '^(2[5-9]|[3-9][0-9])\.'; }
if ! recent_mesa || [ -z "$(icd)" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "software-gpu: Mesa 25+ lavapipe is missing and cannot be installed here (needs root and apt-get on Debian 12)" >&2
    exit 1
  fi
  sources=/etc/apt/sources.list.d/debian.sources
  if [ -f "$sources" ] && ! grep -q bookworm-backports "$sources"; then
    sed -i 's/^Suites: bookworm bookworm-updates$/Suites: bookworm bookworm-updates bookworm-backports/' "$sources"
  fi
  apt-get update >/dev/null 2>&1 || true
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
    echo "software-gpu: installing mesa-vulkan-drivers from bookworm-backports failed" >&2
    exit 1
  fi
fi
# Dawn wants a runtime folder; a CI container usually has none.
mkdir -p /tmp/xdg-runtime && chmod 700 /tmp/xdg-runtime
echo "export VK_ICD_FILENAMES=$(icd) VK_DRIVER_FILES=$(icd) XDG_RUNTIME_DIR=\${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}"
