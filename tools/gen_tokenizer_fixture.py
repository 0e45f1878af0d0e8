#!/usr/bin/env python3
"""gen_tokenizer_fixture.py - write the tokenizer fixture that tests/test_tokenizer_model.c checks.

The reference is llama.cpp's tokenizer (through llama-cpp-python, `pip install llama-cpp-python`),
loaded vocabulary-only from the default model (SmolLM2-135M-Instruct, pre-tokenizer "smollm").

Two corpora:
  hand     strings written here (Unicode, emoji, code, numbers, whitespace runs, special-token
           text) plus random strings drawn from a fixed seed over tricky characters; their full
           ids are stored, both as plain text and with special tokens parsed.
  shared   every text of ../shared/data that the test can recompute itself: each self-instruct
           seed task's instruction and each instance's input and output, and every HH dialogue
           (chosen, then rejected) of hh-rlhf-harmless train then dev. Only a count and a 64-bit
           FNV-1a hash of each id list are stored, so the shared data never enters the repo.

Usage: python3 tools/gen_tokenizer_fixture.py [model.gguf] [shared-data-dir] [out.json]
"""
import json
import random
import sys

from llama_cpp import Llama

MODEL = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
SHARED = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
OUT = sys.argv[3] if len(sys.argv) > 3 else "tests/fixtures/tokenizer/smollm2.json"

HAND = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n\n",
    "Hello world",
    " Hello world",
    "Hello, world! How are you?",
    "trailing spaces   ",
    "trailing tab\t",
    "line one\nline two\n\n\nline five\n",
    "\t\tindented\n    four spaces\n\t mixed \t\n",
    "   leading spaces",
    "a  b   c    d     e",
    "CRLF line\r\nnext\r\n",
    "form\x0cfeed and vertical\x0btab",
    # numbers: digits are split one by one
    "0", "7", "42", "123", "2024", "1234567890",
    "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348",
    "3.14159", "0.5", ".5", "-12.75", "1e-9", "6.022e23", "1,000,000", "$19.99", "50%",
    "v1.2.3", "2024-01-15T12:30:00Z", "+1 (555) 123-4567", "0xDEADBEEF", "0b1010",
    "3 33 333 3333 33333", "12abc34def", "abc123", "x2", "H2O", "CO2",
    "Arabic-Indic \u0663\u0664\u0665, fullwidth \uff13\uff14, superscript x\u00b2, "
    "roman \u216b, fraction \u00bd, circled \u2460",
    # contractions
    "I'm sure you'll see it's what they've done, we'd say I'd've.",
    "'S 'T 'RE 'VE 'M 'LL 'D",
    "don't DON'T Don't",
    "' era", "''''''", "``````", "\"\"\"\"",
    # code
    "def f(x):\n    return x * 2  # double\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; i++) { a[i] += b[i] << 2; }",
    "const x = {a: 1, 'b': [2, 3], \"c\": null};",
    "if x != y && z >= 3 || !w: pass",
    "SELECT * FROM users WHERE id = 10;",
    "<div class=\"main\"><p>Hello</p></div>",
    "https://example.com/path?q=1&r=2#frag",
    "user@example.com",
    "#include <stdio.h>",
    "------======= ~~~~ **** //// \\\\\\\\",
    "=" * 300,
    "a" * 1000,
    " " * 100 + "x",
    "\n" * 50,
    "ab" * 400,
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
    # Unicode
    "F\u00fchrer",
    "na\u00efve caf\u00e9 r\u00e9sum\u00e9",
    "cafe\u0301 (combining acute)",
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f",
    "\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "C\u1eeda Vi\u1ec7t",
    "\u00a0nbsp\u00a0between\u00a0",
    "ideographic\u3000space",
    "en\u2002em\u2003thin\u2009hair\u200a",
    "next\u0085line",
    "line\u2028separator\u2029para",
    "zero\u200bwidth\u200cjoiner\u200d",
    "\ufeffBOM",
    "math: \u2200x \u2208 \u211d, x\u00b2 \u2265 0 \u2211 \u222b \u221e \u2248 \u2260",
    "arrows \u2190 \u2192 \u21d2 \u2194",
    "currency \u20ac5 \u00a33 \u00a5100 \u20b9",
    "\u00bfQu\u00e9? \u00a1S\u00ed!",
    "\u201csmart quotes\u201d and \u2018single\u2019 \u2014 dash \u2013 en \u2026",
    # emoji
    "\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated) \u2705",
    "\U0001f999\U0001f999 \U0001f601 ?",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f44d\U0001f3fd thumbs",
    "\U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5 flags",
    "\u2764\ufe0f \u263a \u2b50",
    "\U0001d400\U0001d401 math bold",
    # special-token text (matched only with special parsing)
    "<|im_start|>",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_end|><|im_end|>",
    "<|endoftext|>",
    "text<|endoftext|>more",
    "<|im_start",
    "im_end|>",
    "<|im_start|><|im_start|>system",
    "<repo_name>rein<file_sep>a.c<filename>x",
    "< |im_start| >",
    "<<|im_end|>>",
    "<|IM_START|>",
    "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
]

# Characters for random strings: every class the regexes distinguish.
POOL = (
    list("abcXYZ019 '\"!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`") + [" "] * 6 + ["\n"] * 3 + ["\t", "\r"]
    + list("\u00e9\u00fc\u00df\u00f1\u0436\u03bb\u05d0\u0639\u0915\u1780\u4e2d\u6587\u3042\ud55c")
    + list("\u0663\uff13\u00b2\u216b\u00bd\u0301\u200d\ufe0f\u00a0\u3000\u2003\u0085\u2028")
    + ["\U0001f680", "\U0001f600", "\U0001f1fa", "\U0001f3fd", "\u2705", "\u20ac", "\u2014"]
    + ["'s", "'ll", "'RE", "<|im_end|>", "<|im_start|>", "<|endoftext|>"]
)


# Byte strings that are not all valid UTF-8: llama.cpp reads a byte that starts no sequence as
# U+FFFD. (It aborts on a 4-byte sequence above U+10FFFF, so those are left out.)
BYTES = [
    b"\xff", b"a\xffz", b"\xc3", b"\xc3(", b"\xe2\x82", b"ab\x80\x80 cd", b"\x00x",
    b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"12\xfe34",
    b"caf\xe9", b"\x80\x81\x82 test \xbf", b"hello \xf0\x9f\x98\x81\xf0 world",
]


def llama_cpp_aborts(b):
    """Whether llama.cpp's lenient UTF-8 reader meets a code point above U+10FFFF."""
    i = 0
    while i < len(b):
        c = b[i]
        need = 0 if c < 0x80 else -1 if not c & 0x40 else 1 if not c & 0x20 else \
            2 if not c & 0x10 else 3 if not c & 0x08 else -1
        if need <= 0 or i + need >= len(b):
            i += 1
            continue
        if all(b[i + k] & 0xC0 == 0x80 for k in range(1, need + 1)):
            cp = c & (0x1F, 0x0F, 0x07)[need - 1]
            for k in range(1, need + 1):
                cp = cp << 6 | (b[i + k] & 0x3F)
            if cp > 0x10FFFF:
                return True
            i += need + 1
        else:
            i += 1
    return False


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in (i & 0xFFFFFFFF).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def shared_texts():
    """The shared texts, in the order tests/test_tokenizer_model.c reads them."""
    out = []
    with open(f"{SHARED}/self-instruct/seed_tasks.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            task = json.loads(line)
            out.append(task["instruction"])
            for inst in task["instances"]:
                out.append(inst["input"])
                out.append(inst["output"])
    n_si = len(out)
    for part in ("train", "dev"):
        with open(f"{SHARED}/hh-rlhf-harmless/{part}.jsonl", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                out.append(row["chosen"])
                out.append(row["rejected"])
    return out, n_si


def main():
    llm = Llama(model_path=MODEL, vocab_only=True, verbose=False)

    def tok(text, special):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    rng = random.Random(1234)
    hand = list(HAND)
    for _ in range(300):
        hand.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))))

    # A sanity check on the reference itself: SmolLM's pre-tokenizer isolates every digit.
    assert tok("12345", False) == [tok(d, False)[0] for d in "12345"], "digits not split"

    byte_cases = list(BYTES)
    frags = [b"a", b" ", b"1", b"\n", b"\xc3\xa9", b"\xe4\xb8\xad", b"\xf0\x9f\x98\x80", b"'s"]
    while len(byte_cases) < 215:
        b = b"".join(rng.choice(frags) if rng.random() < 0.6 else bytes([rng.randrange(256)])
                     for _ in range(rng.randint(1, 24)))
        if not llama_cpp_aborts(b):
            byte_cases.append(b)

    fixture = {
        "model": MODEL.split("/")[-1],
        "reference": "llama.cpp via llama-cpp-python, vocab_only, add_bos=False",
        "hand": [{"text": s, "ids": tok(s, False), "ids_special": tok(s, True)} for s in hand],
        "bytes": [{"hex": b.hex(), "ids": llm.tokenize(b, add_bos=False, special=False)}
                  for b in byte_cases],
    }
    texts, n_si = shared_texts()
    hashes = []
    for s in texts:
        ids = tok(s, False)
        hashes.append(f"{len(ids)}:{fnv1a64(ids):016x}")
    fixture["shared"] = {
        "hash": "FNV-1a 64 over the ids as little-endian int32, as count:hex",
        "n_self_instruct": n_si,
        "n_hh": len(texts) - n_si,
        "ids": hashes,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: {len(hand)} hand strings, {len(texts)} shared texts "
          f"({n_si} self-instruct, {len(texts) - n_si} HH)")


if __name__ == "__main__":
    main()
