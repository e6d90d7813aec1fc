#!/usr/bin/env bash
# Creates a SoftHSM2 token under DIR (once): DIR/softhsm2.conf, DIR/tokens/, and random
# PINs in DIR/user.pin and DIR/so.pin (mode 0600). Prints nothing secret.
# usage: softhsm/create-token.sh DIR LABEL
set -euo pipefail
dir=$1
label=$2
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir/tokens"
chmod 700 "$dir"
conf="$dir/softhsm2.conf"
if [ ! -f "$conf" ]; then
  sed "s#@TOKENDIR@#$(cd "$dir/tokens" && pwd)#" "$here/native-config/softhsm2.conf.template" > "$conf"
fi
export SOFTHSM2_CONF="$conf"
umask 077
[ -s "$dir/user.pin" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$dir/user.pin"
[ -s "$dir/so.pin" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$dir/so.pin"
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$label\$"; then
  softhsm2-util --init-token --free --label "$label" --so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >/dev/null
  echo "p11kms: created SoftHSM2 token '$label' in $dir" >&2
fi
