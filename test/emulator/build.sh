#!/usr/bin/env bash
# Builds the HSM emulator (libp11emu.so) once per source version and prints its path.
# Cached under build/hsm-emulator/<hash of the sources>/ (not committed); a concurrent build by
# another test file writes to a temp name and renames, so readers never see a half-written .so.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
headers="$root/node_modules/pkcs11js/includes/pkcs11"
hash="$(cat "$here/p11emu.c" "$here/p11emu-gcm.c" "$here/build.sh" | sha256sum | cut -c1-16)"
out="$root/build/hsm-emulator/$hash/libp11emu.so"
if [ ! -e "$out" ]; then
  command -v gcc >/dev/null || { echo "p11emu: gcc is missing (./scripts/setup installs it)" >&2; exit 1; }
  mkdir -p "$(dirname "$out")"
  tmp="$(mktemp "$out.XXXXXX")"
  gcc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden -I "$headers" \
    -o "$tmp" "$here/p11emu.c" -ldl -lpthread
  mv -f "$tmp" "$out"
fi
echo "$out"
