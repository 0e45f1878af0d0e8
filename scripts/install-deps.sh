#!/bin/sh
# Install the Debian packages rein builds with, if any is missing. Idempotent; quiet when all is there.
set -e
PKGS="build-essential libpcre2-dev libcjson-dev libsqlite3-dev python3-pip"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "rein: installing Debian packages:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "rein: apt-get not found; install these packages by hand:$missing" >&2
    exit 1
fi
$SUDO apt-get update -q || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
