#!/bin/sh
# Run test programs; each exits 0 (pass), 77 (skip, with its reason printed) or anything else (fail).
# Ends with the line "N passed, N failed, N skipped". Exit status 1 if any failed.
BUILD=$1
export REIN_BIN="$BUILD/rein"  # for the end-to-end CLI test
shift
pass=0; fail=0; skip=0; failed=""
mkdir -p "$BUILD/test-logs"
for t in "$@"; do
    name=$(basename "$t")
    log="$BUILD/test-logs/$name.log"
    start=$(date +%s)
    "$t" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS  %-28s %4ss\n' "$name" "$secs"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); printf 'SKIP  %-28s %s\n' "$name" "$(grep -m1 SKIP "$log")"
    else
        fail=$((fail + 1)); failed="$failed $name"
        printf 'FAIL  %-28s (exit %d) -- last lines of %s:\n' "$name" "$rc" "$log"
        tail -n 25 "$log" | sed 's/^/      /'
    fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
