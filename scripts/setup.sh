#!/usr/bin/env bash
# Installs the Debian 12 packages rangekv needs to build, test and run.
# Idempotent: runs apt-get update and install only when something is missing.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkgconf clang clang-format
  librocksdb-dev liburing-dev libprotobuf-c-dev protobuf-c-compiler
  libxxhash-dev libcriterion-dev libclang-rt-14-dev python3
  iproute2
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
