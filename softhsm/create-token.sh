#!/usr/bin/env bash
# Creates a SoftHSM2 token under DIR (once): DIR/softhsm2.conf, DIR/tokens/, and random
# PINs in PINDIR/user.pin and PINDIR/so.pin (mode 0600; PINDIR defaults to DIR). Several tokens
# can share DIR (one SOFTHSM2_CONF, one process loads them all); give each its own PINDIR.
# Prints nothing secret.
# usage: softhsm/create-token.sh DIR LABEL [PINDIR]
set -euo pipefail
dir=$1
label=$2
pindir=${3:-$dir}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir/tokens"
chmod 700 "$dir"
mkdir -p "$pindir"
chmod 700 "$pindir"
conf="$dir/softhsm2.conf"
if [ ! -f "$conf" ]; then
  sed "s#@TOKENDIR@#$(cd "$dir/tokens" && pwd)#" "$here/native-config/softhsm2.conf.template" > "$conf"
fi
export SOFTHSM2_CONF="$conf"
umask 077
[ -s "$pindir/user.pin" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$pindir/user.pin"
[ -s "$pindir/so.pin" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$pindir/so.pin"
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$label\$"; then
  softhsm2-util --init-token --free --label "$label" --so-pin "$(cat "$pindir/so.pin")" --pin "$(cat "$pindir/user.pin")" >/dev/null
  echo "p11kms: created SoftHSM2 token '$label' in $dir" >&2
fi
