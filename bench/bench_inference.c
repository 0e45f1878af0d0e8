/* bench_inference.c - prefill and decode speed of the default model, rein beside llama.cpp.
 *
 * pp512: one forward pass over 512 prompt tokens; tg128: 128 tokens decoded one at a time (the
 * names llama.cpp's llama-bench uses). Both at 1 and 2 threads, with the process's peak RSS.
 * llama.cpp is measured in the same run when it can be: $LLAMA_BENCH pointing at a llama-bench
 * binary, else tools/llama_cpp_bench.py through llama-cpp-python if that is installed. The ratio
 * printed is rein / llama.cpp (above 1: rein is faster). Not a test: nothing here passes or fails.
 */
#include "base/base.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/resource.h>

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

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

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    double t = rein_time_now();
    rein_model *m;
    if (rein_model_load(path, &m) != REIN_OK) {
        fprintf(stderr, "bench_inference: %s\n", rein_last_error());
        return 1;
    }
    printf("== inference: %s\n", path);
    printf("load %.2f s, peak RSS after load %.0f MB\n", rein_time_now() - t, peak_rss_mb());
    const int n_prompt = 512, n_gen = 128;
    int32_t *toks = rein_malloc(sizeof(int32_t) * n_prompt), *seq = rein_calloc(n_prompt, 4);
    for (int i = 0; i < n_prompt; i++) toks[i] = (i * 7919 + 13) % 40000 + 100;
    const rein_model_config *c = rein_model_get_config(m);
    float *logits = rein_malloc(sizeof(float) * (size_t)c->n_vocab);
    uint8_t *want = rein_calloc(n_prompt, 1);
    want[n_prompt - 1] = 1;
    rein_kv_cache *kv;
    if (rein_kv_cache_new(m, 1, n_prompt + n_gen + 1, &kv) != REIN_OK) return 1;

    printf("%-8s %-22s %10s %10s %8s\n", "threads", "test", "rein t/s", "peer t/s", "ratio");
    for (int threads = 1; threads <= 2; threads++) {
        rein_set_threads(threads);
        double pp = 0;
        for (int rep = 0; rep < 2; rep++) {
            rein_kv_cache_clear(kv, -1);
            t = rein_time_now();
            rein_model_forward(m, kv, toks, seq, (size_t)n_prompt, want, logits);
            pp = REIN_MAX(pp, n_prompt / (rein_time_now() - t));
        }
        rein_kv_cache_clear(kv, -1);
        rein_model_forward(m, kv, toks, seq, 1, NULL, logits);
        int32_t tok = 200, s0 = 0;
        t = rein_time_now();
        for (int i = 0; i < n_gen; i++) {
            rein_model_forward(m, kv, &tok, &s0, 1, NULL, logits);
            tok = (tok * 31 + 7) % 40000 + 100;
        }
        double tg = n_gen / (rein_time_now() - t);
        double ppp, ptg;
        char who[64];
        peer(path, threads, &ppp, &ptg, who, sizeof who);
        char r1[16] = "-", r2[16] = "-", p1[16] = "n/a", p2[16] = "n/a";
        if (ppp > 0) {
            snprintf(p1, sizeof p1, "%.1f", ppp);
            snprintf(r1, sizeof r1, "%.2fx", pp / ppp);
        }
        if (ptg > 0) {
            snprintf(p2, sizeof p2, "%.1f", ptg);
            snprintf(r2, sizeof r2, "%.2fx", tg / ptg);
        }
        printf("%-8d %-22s %10.1f %10s %8s\n", threads, "prefill pp512", pp, p1, r1);
        printf("%-8d %-22s %10.1f %10s %8s\n", threads, "decode tg128", tg, p2, r2);
        if (ppp == 0 && ptg == 0 && threads == 1)
            printf("(no peer: set LLAMA_BENCH=path/to/llama-bench or pip install llama-cpp-python)\n");
        else if (threads == 1) printf("(peer: %s, same model file, same threads)\n", who);
    }
    printf("peak RSS %.0f MB (weights dequantized to f32: %.0f MB)\n", peak_rss_mb(),
           rein_model_n_params(m) * 4 / 1048576.0);
    rein_kv_cache_free(kv);
    rein_free(toks), rein_free(seq), rein_free(logits), rein_free(want);
    rein_model_free(m);
    return 0;
}
