#!/usr/bin/env python3
"""llama_cpp_bench.py - llama.cpp's prefill and decode speed on a GGUF model, for rein's bench.

Measures what llama.cpp's `llama-bench` calls pp512 (one batch of 512 prompt tokens) and tg128
(128 tokens decoded one at a time) through llama-cpp-python's bindings to llama.cpp, when no
`llama-bench` binary is at hand (bench/bench_inference.c prefers $LLAMA_BENCH when set). Prints one
JSON object: {"pp_tps", "tg_tps", "threads", "peak_rss_mb", "llama_cpp_version"}.

Usage: python3 tools/llama_cpp_bench.py MODEL.gguf THREADS [N_PROMPT] [N_GEN]
Needs `pip install llama-cpp-python` (it builds llama.cpp from source).
"""
import json
import resource
import sys
import time


def main():
    model, threads = sys.argv[1], int(sys.argv[2])
    n_prompt = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    n_gen = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model, n_ctx=n_prompt + n_gen + 8, n_batch=n_prompt,
                          n_ubatch=n_prompt, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    prompt = [(i * 7919 + 13) % 40000 + 100 for i in range(n_prompt)]
    llm.eval(prompt[:8])  # warm up
    best_pp = 0.0
    for _ in range(2):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        best_pp = max(best_pp, n_prompt / (time.perf_counter() - t))
    llm.reset()
    llm.eval(prompt[:1])
    tok = 200
    t = time.perf_counter()
    for _ in range(n_gen):
        llm.eval([tok])
        tok = (tok * 31 + 7) % 40000 + 100
    tg = n_gen / (time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pp_tps": best_pp, "tg_tps": tg, "threads": threads,
                      "peak_rss_mb": rss, "llama_cpp_version": llama_cpp.__version__}))


if __name__ == "__main__":
    main()
