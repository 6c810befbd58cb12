#!/usr/bin/env bash
# Installs what ptrain needs on a Debian or Ubuntu machine that already has the Swift toolchain:
# pkg-config, zlib, hwloc, libpng and TurboJPEG development files. Installs only what is missing; safe to run again.
set -euo pipefail

packages=(pkg-config zlib1g-dev libhwloc-dev libpng-dev libturbojpeg0-dev)
if [ "${PTRAIN_WITH_MPI:-0}" = "1" ]; then packages+=(libopenmpi-dev openmpi-bin); fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ptrain setup: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "ptrain setup: the Swift toolchain (swift) is not on PATH; install Swift 6.2 or newer first" >&2; exit 1; }
