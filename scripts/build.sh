#!/usr/bin/env bash
# scripts/build.sh [release|debug|sanitize] [gcc|clang] — configure and build
# into build/<type>-<cc>. Prints the build directory on the last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
type="${1:-release}"
cc="${2:-gcc}"
case "$type" in
  release) bt=Release ;;
  debug) bt=Debug ;;
  sanitize) bt=Sanitize ;;
  *) echo "build.sh: unknown build type '$type'" >&2; exit 2 ;;
esac
dir="$root/build/$type-$cc"
werror=OFF
if [ "${CI:-}" = "true" ] || [ "${RK_WERROR:-}" = "1" ]; then werror=ON; fi
gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
if [ ! -f "$dir/CMakeCache.txt" ]; then
  CC="$cc" cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE="$bt" \
    -DRK_WERROR="$werror" >/dev/null
else
  cmake -S "$root" -B "$dir" -DRK_WERROR="$werror" >/dev/null
fi
cmake --build "$dir" -j"$(nproc)" >&2
echo "$dir"
