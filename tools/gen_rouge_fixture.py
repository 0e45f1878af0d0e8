#!/usr/bin/env python3
"""gen_rouge_fixture.py - ROUGE-L reference values from Google's rouge_score package.

Writes tests/fixtures/align/rouge.jsonl, read by tests/test_rouge.c:
  {"kind": "pair", "pred": P, "target": T, "f": F, "tokens": [...]}  one score, and P's tokens
  {"kind": "pool", "texts": [...], "max": [...], "argmax": [...]}     for every i >= 1, the highest
      F of texts[i] against texts[0..i) and the first index that has it (Self-Instruct's filter)
F is rouge_score's rougeL fmeasure (no stemmer), written with repr() so that C can compare it
bit for bit. The pairs include hand-written edge cases (case, punctuation, digits, non-ASCII
letters, the Kelvin sign, dotted capital I, empty texts) and seeded random texts from a small
vocabulary, long enough to cross 64- and 128-token word boundaries of the bit-parallel LCS.

Usage: pip install rouge-score; python3 tools/gen_rouge_fixture.py [out.jsonl]
"""
import json
import random
import sys

from rouge_score import rouge_scorer, tokenize

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/align/rouge.jsonl"
scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def f(pred, target):
    # score(target, prediction): rouge_score's argument order
    return scorer.score(target, pred)["rougeL"].fmeasure


HAND = [
    ("Give three tips for staying healthy.", "Give three tips for staying healthy."),
    ("Give three tips for staying healthy.", "What are three tips to stay healthy?"),
    ("Write a poem about the sea", "write a POEM about the Sea!!!"),
    ("", "something"),
    ("...", "!!!"),
    ("a", "a"),
    ("The cat sat on the mat", "the mat sat on the cat"),
    ("don't stop-believing; 2023's hits", "dont stop believing 2023 s hits"),
    ("Caf\u00e9 na\u00efve r\u00e9sum\u00e9", "caf na ve r sum"),
    ("\u212aelvin scale", "kelvin scale"),
    ("\u0130stanbul is big", "i stanbul is big"),
    ("A\u0130B", "ai b"),
    ("\u00dcber \u00e4rger \u00df", "ber rger"),
    ("tabs\tand\nnewlines  here", "tabs and newlines here"),
    ("x1y2z3 99 bottles", "x1y2z3 bottles 99"),
    ("\U0001f999 llama emoji", "llama emoji"),
    ("Summarize the article in one sentence.", "Summarise this article in a single sentence."),
]

WORDS = ("a an the of to in on for with write give explain list three two tips poem story "
         "summary article sentence why how what is are make create describe water sky blue "
         "healthy food recipe name city country 1 2 10 2024").split()


def rand_text(rng, lo, hi):
    n = rng.randint(lo, hi)
    out = []
    for _ in range(n):
        w = rng.choice(WORDS)
        if rng.random() < 0.15:
            w = w.capitalize()
        out.append(w)
        if rng.random() < 0.1:
            out.append(rng.choice([",", ".", "?", "!", " -", ";"]))
    return " ".join(out)


def main():
    rng = random.Random(7)
    lines = []
    pairs = list(HAND)
    for _ in range(200):
        pairs.append((rand_text(rng, 0, 20), rand_text(rng, 0, 20)))
    for _ in range(60):
        pairs.append((rand_text(rng, 50, 180), rand_text(rng, 50, 180)))
    for lo, hi in ((63, 65), (127, 129), (300, 320)):
        for _ in range(5):
            pairs.append((rand_text(rng, lo, hi), rand_text(rng, lo, hi)))
    for p, t in pairs:
        lines.append({"kind": "pair", "pred": p, "target": t, "f": f(p, t),
                      "tokens": tokenize.tokenize(p, None)})
    texts = [rand_text(rng, 3, 25) for _ in range(400)]
    mx, am = [0.0], [-1]
    for i in range(1, len(texts)):
        scores = [f(texts[i], texts[j]) for j in range(i)]
        best = max(scores)
        mx.append(best)
        am.append(scores.index(best))
    lines.append({"kind": "pool", "texts": texts, "max": mx, "argmax": am})
    with open(OUT, "w") as fp:
        for obj in lines:
            # repr-exact floats: json.dumps writes float repr
            fp.write(json.dumps(obj, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(pairs)} pairs, a pool of {len(texts)}")


if __name__ == "__main__":
    main()
