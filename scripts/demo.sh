#!/bin/sh
# The main job on the default model: principle-driven self-alignment from scratch (`rein align`:
# Self-Instruct and topic-guided red-teaming prompts, principle-driven answers, engraving, verbose
# cloning), then the base and the aligned model side by side on rein's held-out red-team questions
# and benign prompts. Sized to take about 15 minutes on 2 cores; run it again and the finished
# stages are skipped (the run folder keeps everything). REIN_DEMO_PROMPTS=N sets the size.
set -e
REIN=./build/rein
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=${REIN_DEMO_OUT:-runs/align-demo}
PROMPTS=${REIN_DEMO_PROMPTS:-200}
RESUME=
[ -f "$OUT/run.db" ] && RESUME=--resume
echo "== rein align -m $MODEL --out $OUT --prompts $PROMPTS $RESUME"
$REIN align -m "$MODEL" --out "$OUT" --prompts "$PROMPTS" $RESUME
echo
sed -n '/^## Evaluation/,/^## Side by side/p' "$OUT/report.md" | sed '$d'
echo "The report: $OUT/report.md and $OUT/report.html (the chart and side-by-side answers)."
echo "Every prompt, answer and filter verdict: sqlite3 $OUT/run.db. The aligned model: the adapter"
echo "$OUT/clone/adapter; e.g. $REIN export -m $MODEL --adapter $OUT/clone/adapter --out aligned.gguf"
