#!/usr/bin/env python3
"""gen_wilson_fixture.py - Wilson score intervals from statsmodels, for tests/test_redteam.c.

Writes tests/fixtures/align/wilson.inc: one C initialiser line per case,
  {k, n, low, high},
from statsmodels.stats.proportion.proportion_confint(k, n, alpha=0.05, method="wilson"),
with 17 significant digits.

Usage: pip install statsmodels; python3 tools/gen_wilson_fixture.py [out.inc]
"""
import sys

from statsmodels.stats.proportion import proportion_confint

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/align/wilson.inc"
CASES = [(0, 1), (1, 1), (0, 10), (5, 10), (10, 10), (3, 25), (12, 25), (0, 320), (1, 320),
         (37, 320), (160, 320), (319, 320), (3, 175), (17, 175), (0, 520), (411, 520), (1, 3)]

with open(OUT, "w") as f:
    f.write("/* written by tools/gen_wilson_fixture.py from statsmodels' proportion_confint("
            "method=\"wilson\", alpha=0.05) */\n")
    for k, n in CASES:
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        f.write(f"{{{k}, {n}, {lo:.17g}, {hi:.17g}}},\n")
print(f"wrote {OUT}: {len(CASES)} cases")
