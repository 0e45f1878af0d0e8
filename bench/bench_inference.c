/* bench_inference.c - prefill and decode speed of the default model, rein beside llama.cpp.
 *
 * pp512: one forward pass over 512 prompt tokens; tg128: 128 tokens decoded one at a time (the
 * names llama.cpp's llama-bench uses), at batch 1 and with 16 sequences decoded together (one
 * forward of 16 rows a step: the rollout engine's shape; "b16 p512": the 16 continue one 512-token
 * prompt whose cache rows are copied into each or shared; "f16 KV": with a KV cache of f16, the
 * CLI's --kv-f16; "int8": with int8 activations, --int8-decode), for the default Q4_1 file and
 * its Q8_0 and F32 versions (`rein export --type q8_0|f32`, derived from the Q4_1 file), 1 and all
 * threads.
 * llama.cpp is measured in the same run when it can be: $LLAMA_BENCH pointing at a llama-bench
 * binary, else tools/llama_cpp_bench.py through llama-cpp-python if that is installed. The ratio
 * printed is rein / llama.cpp (above 1: rein is faster); batch 16's second ratio is to rein's batch
 * 1 in the same mode, the two measured in turns. Not a test: nothing here passes or fails.
 */
#include "benchutil.h"
#include "base/base.h"
#include "kernels/qmatmul.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <string.h>

/* Measure llama.cpp on the same file and threads; pp and tg stay 0 if it cannot run. Both peers
 * print JSON: llama-bench (-o json) an array of runs with n_prompt, n_gen and avg_ts; the python
 * tool one object with pp_tps and tg_tps. */
static void peer(const char *model, int threads, double *pp, double *tg, char *who, size_t wn) {
    char cmd[2048];
    *pp = *tg = 0;
    const char *lb = getenv("LLAMA_BENCH");
    if (lb && *lb) {
        snprintf(cmd, sizeof cmd, "%s -m %s -p 512 -n 128 -t %d -o json 2>/dev/null", lb, model,
                 threads);
        snprintf(who, wn, "llama-bench");
    } else {
        snprintf(cmd, sizeof cmd, "python3 tools/llama_cpp_bench.py %s %d 512 128 2>/dev/null",
                 model, threads);
        snprintf(who, wn, "llama.cpp via llama-cpp-python");
    }
    FILE *f = popen(cmd, "r");
    if (!f) return;
    rein_buf out = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) rein_buf_append(&out, chunk, n);
    pclose(f);
    cJSON *j = out.data ? cJSON_Parse(out.data) : NULL;
    if (cJSON_IsArray(j)) {
        const cJSON *run;
        cJSON_ArrayForEach(run, j) {
            double np = cJSON_GetNumberValue(cJSON_GetObjectItem(run, "n_prompt"));
            double ng = cJSON_GetNumberValue(cJSON_GetObjectItem(run, "n_gen"));
            double ts = cJSON_GetNumberValue(cJSON_GetObjectItem(run, "avg_ts"));
            if (np == 512 && ng == 0) *pp = ts;
            if (np == 0 && ng == 128) *tg = ts;
        }
    } else if (cJSON_IsObject(j)) {
        *pp = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "pp_tps"));
        *tg = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "tg_tps"));
    }
    if (!(*pp > 0)) *pp = 0;
    if (!(*tg > 0)) *tg = 0;
    cJSON_Delete(j);
    rein_buf_free(&out);
}

/* rein's figures for one model file at the current thread count; the int8 ones (decoding with
 * int8 activations, rein_qmatmul_set_int8) 0 where that mode does not run or the file's linear
 * weights are not Q8_0 or Q4_1. */
typedef struct figures {
    double pp, tg1, tg16, tg1_int8, tg16_int8;
    double tg16_copied, tg16_shared; /* batch 16 behind one 512-token prompt, copied or shared */
    double tg16_f16, tg16_int8_f16;  /* batch 16 with an f16 KV cache */
} figures;

enum { NP = 512, NG = 128, NB = 16 };

/* Decode NG steps of b sequences (one token each, one forward a step): tokens/s, the best of
 * `reps` runs (this machine's figures move by 10-20% from one run to the next). With a prompt
 * (prompt != NULL), the b sequences continue it: it runs once in sequence 0, and the others get
 * its cache rows by rein_kv_cache_share (share) or rein_kv_cache_copy: the rollouts of many
 * samples of one long prompt, as in PPO and self-alignment. */
static double decode_after(rein_model *m, rein_kv_cache *kv, float *logits, int b,
                           const int32_t *prompt, int share, int reps) {
    double best = 0;
    int32_t *zero = rein_calloc(NP, sizeof(int32_t));
    for (int rep = 0; rep < reps; rep++) {
        int32_t tok[NB], sq[NB];
        rein_kv_cache_clear(kv, -1);
        if (prompt) {
            rein_model_forward(m, kv, prompt, zero, NP, NULL, NULL);
            for (int i = 1; i < b; i++)
                if (share) rein_kv_cache_share(kv, 0, i, NP);
                else rein_kv_cache_copy(kv, 0, i, NP);
        }
        for (int i = 0; i < b; i++) tok[i] = 200 + i, sq[i] = i;
        rein_model_forward(m, kv, tok, sq, (size_t)b, NULL, logits); /* warm: copies, pages in */
        double t = rein_time_now();
        for (int s = 0; s < NG; s++) {
            for (int i = 0; i < b; i++) tok[i] = (tok[i] * 31 + 7) % 40000 + 100;
            rein_model_forward(m, kv, tok, sq, (size_t)b, NULL, logits);
        }
        best = REIN_MAX(best, b * NG / (rein_time_now() - t));
    }
    rein_free(zero);
    return best;
}

/* Batch 1, batch 16, and batch 16 with the f16 cache, in turns, the best of each over three
 * rounds: the ratio of batch 16 to batch 1 is a target, and this machine's memory bandwidth (which
 * bounds batch 1) moves by up to 40% within minutes, so measured one after the other the two could
 * come from different machines. */
static void decode_set(rein_model *m, rein_kv_cache *kv, rein_kv_cache *kv16, float *logits,
                       double *b1, double *b16, double *b16_f16) {
    *b1 = *b16 = *b16_f16 = 0;
    for (int round = 0; round < 3; round++) {
        const double a = decode_after(m, kv, logits, 1, NULL, 0, 1);
        const double b = decode_after(m, kv, logits, NB, NULL, 0, 1);
        const double c = decode_after(m, kv16, logits, NB, NULL, 0, 1);
        *b1 = REIN_MAX(*b1, a), *b16 = REIN_MAX(*b16, b), *b16_f16 = REIN_MAX(*b16_f16, c);
    }
}

static void measure(rein_model *m, figures *f) {
    const rein_model_config *c = rein_model_get_config(m);
    int32_t *toks = rein_malloc(sizeof(int32_t) * NP), *seq = rein_calloc(NP, 4);
    for (int i = 0; i < NP; i++) toks[i] = (i * 7919 + 13) % 40000 + 100;
    float *logits = rein_malloc(sizeof(float) * (size_t)c->n_vocab * NB);
    uint8_t *want = rein_calloc(NP, 1);
    want[NP - 1] = 1;
    rein_kv_cache *kv, *kv16;
    if (!toks || !seq || !logits || !want || rein_kv_cache_new(m, NB, NP + NG + 1, &kv) ||
        rein_kv_cache_new_typed(m, NB, NP + NG + 1, REIN_TYPE_F16, &kv16)) {
        fprintf(stderr, "bench_inference: out of memory\n");
        exit(1);
    }
    f->pp = 0;
    for (int rep = 0; rep < 2; rep++) {
        rein_kv_cache_clear(kv, -1);
        double t = rein_time_now();
        rein_model_forward(m, kv, toks, seq, NP, want, logits);
        f->pp = REIN_MAX(f->pp, NP / (rein_time_now() - t));
    }
    decode_set(m, kv, kv16, logits, &f->tg1, &f->tg16, &f->tg16_f16);
    f->tg16_copied = decode_after(m, kv, logits, NB, toks, 0, 2);
    f->tg16_shared = decode_after(m, kv, logits, NB, toks, 1, 2);
    const int type = rein_model_decode_weight(m, 0, 0).type;
    rein_qmatmul_set_int8(1);
    if (rein_qmatmul_int8() && (type == REIN_TYPE_Q8_0 || type == REIN_TYPE_Q4_1))
        decode_set(m, kv, kv16, logits, &f->tg1_int8, &f->tg16_int8, &f->tg16_int8_f16);
    rein_qmatmul_set_int8(0);
    rein_kv_cache_free(kv);
    rein_kv_cache_free(kv16);
    rein_free(toks), rein_free(seq), rein_free(logits), rein_free(want);
}

static void ratio(char *buf, size_t n, double a, double b) {
    if (b > 0) snprintf(buf, n, "%.2fx", a / b);
    else snprintf(buf, n, "-");
}

/* One line: rein's figure, the peer's, their ratio, and (when batch1 > 0) the ratio to rein's
 * batch 1 in the same mode. */
static void row(const char *file, const char *th, const char *test, double tps, const char *peer_s,
                double peer_tps, double batch1) {
    char r[16], r1[16];
    ratio(r, sizeof r, tps, peer_tps);
    printf("%-34s %-3s %-14s %10.1f %10s %8s", file, th, test, tps, peer_s, r);
    if (batch1 > 0) {
        ratio(r1, sizeof r1, tps, batch1);
        printf("  (%s rein batch 1)", r1);
    }
    printf("\n");
}

int main(int argc, char **argv) {
    /* the default Q4_1 file and, when made (`rein export --type q8_0|f32`), its Q8_0 and F32
     * versions; or the files named on the command line */
    const char *dflt[] = {"models/SmolLM2-135M-Instruct.F32.gguf",
                          "models/SmolLM2-135M-Instruct.Q8_0.gguf",
                          "models/SmolLM2-135M-Instruct.Q4_1.gguf"};
    const char *const *files = argc > 1 ? (const char *const *)argv + 1 : dflt;
    int n_files = argc > 1 ? argc - 1 : 3;
    int max_threads = rein_get_threads();
    printf("== inference: prefill pp512, decode tg128 at batch 1 and 16 sequences, 1 and %d "
           "threads\n", max_threads);
    printf("%-34s %-3s %-14s %10s %10s %8s\n", "model", "thr", "test", "rein t/s", "llama.cpp",
           "ratio");
    char who[64] = "";
    for (int fi = 0; fi < n_files; fi++) {
        FILE *probe = fopen(files[fi], "rb");
        if (!probe) {
            printf("%-34s (absent: make bench derives it with rein export)\n", files[fi]);
            continue;
        }
        fclose(probe);
        rein_model *m;
        double t = rein_time_now();
        if (rein_model_load(files[fi], &m) != REIN_OK) {
            fprintf(stderr, "bench_inference: %s\n", rein_last_error());
            return 1;
        }
        double load_s = rein_time_now() - t;
        const char *base = strrchr(files[fi], '/') ? strrchr(files[fi], '/') + 1 : files[fi];
        /* 1 thread, then all of them */
        for (int threads = 1; threads <= max_threads;
             threads = threads < max_threads ? max_threads : threads + 1) {
            rein_set_threads(threads);
            figures f = {0};
            measure(m, &f);
            double ppp, ptg;
            peer(files[fi], threads, &ppp, &ptg, who, sizeof who);
            char p1[16] = "n/a", p2[16] = "n/a", th[16];
            if (ppp > 0) snprintf(p1, sizeof p1, "%.1f", ppp);
            if (ptg > 0) snprintf(p2, sizeof p2, "%.1f", ptg);
            snprintf(th, sizeof th, "%d", threads);
            row(base, th, "pp512", f.pp, p1, ppp, 0);
            row("", th, "tg128 batch 1", f.tg1, p2, ptg, 0);
            row("", th, "tg128 batch 16", f.tg16, p2, ptg, f.tg1);
            row("", th, "b16 p512 copy", f.tg16_copied, "", 0, 0);
            row("", th, "b16 p512 share", f.tg16_shared, "", 0, 0);
            row("", th, "b16 f16 KV", f.tg16_f16, p2, ptg, f.tg1);
            if (f.tg1_int8 > 0) {
                row("", th, "tg128 b1 int8", f.tg1_int8, p2, ptg, 0);
                row("", th, "tg128 b16 int8", f.tg16_int8, p2, ptg, f.tg1_int8);
                row("", th, "b16 int8 f16KV", f.tg16_int8_f16, p2, ptg, f.tg1_int8);
            }
            fflush(stdout);
            base = "";
        }
        printf("%-34s load %.2f s, resident memory with the model loaded %.0f MB (peak so far "
               "%.0f MB)\n", "", load_s, bench_rss_now_mb(), bench_peak_rss_mb());
        rein_model_free(m);
    }
    if (who[0]) printf("peer: %s, same file, same threads (its batch-16 column is its batch 1)\n", who);
    printf("ratio = rein / llama.cpp (above 1: rein is faster). Not a test: nothing passes or "
           "fails.\n");
    return 0;
}
