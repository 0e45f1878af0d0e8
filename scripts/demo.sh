#!/bin/sh
# The main job on the default model. Until the alignment pipeline lands, a short, non-interactive
# tour: what the model is, then a few chat answers and a plain continuation, with their speed.
set -e
REIN=./build/rein
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
echo "== rein info"
$REIN info $MODEL
echo
for q in "What is the capital of France?" \
         "Give me three tips for staying focused while studying." \
         "Write a haiku about the sea."; do
    echo "== rein generate --chat -p \"$q\" --temp 0"
    $REIN generate -m $MODEL --chat -p "$q" -n 128 --temp 0 -v
    echo
done
echo "== rein generate -p \"The three laws of robotics are\" --seed 1"
$REIN generate -m $MODEL -p "The three laws of robotics are" -n 64 --seed 1 -v
