/* bench_train.c - training speed and memory of the default model, rein beside PyTorch.
 *
 * One step = forward + backward + AdamW over 4 sequences of 256 tokens (packed), full fine-tuning
 * and LoRA (r=16 on every linear layer), at 1 and 2 threads, with f32 products and, where the CPU
 * has AVX512_BF16, with BF16 products (the same step otherwise; the "loss gap" column shows how far
 * its losses move from the f32 run's over the same steps). Each configuration runs in a fresh
 * process so that its peak RSS is its own. Model FLOPs utilisation is against the FP32 FMA peak of
 * the threads used, measured in the run just before and after each f32 configuration (the higher
 * of the two; about 520 GFLOP/s on both cores here, but the clock moves by several percent from
 * one hour to the next); REIN_PEAK_GFLOPS, the peak of all cores, overrides. PyTorch (CPU, same
 * shapes, same threads; tools/torch_train_bench.py) is measured in the same run when `torch` is
 * importable, twice: as a user runs it by default, and tuned (OPENBLAS_* unset,
 * OMP_WAIT_POLICY=PASSIVE, glibc's malloc mmap/trim thresholds raised). Figures, not a test.
 */
#include "benchutil.h"
#include "base/base.h"
#include "kernels/matmul.h"
#include "model/train.h"
#include "train/optim.h"
#include "train/params.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

enum { B = 4, T = 256, STEPS = 3 };

/* Matrix FLOPs of one step per token: forward 2 per weight of every linear layer and the head,
 * backward 2 more for the input gradient and, in full fine-tuning, 2 for the weight gradient;
 * attention adds 4 T d per layer forward (scores and values, causal half) and twice that back. */
static double step_flops(const rein_model_config *c, int full, int64_t lora_params) {
    double lin = 0;
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    lin += (double)c->n_layers * ((double)c->dim * (2.0 * q + 2.0 * kv) + 3.0 * c->dim * c->ffn_dim);
    lin += (double)c->n_vocab * c->dim;
    double per_tok = (full ? 6 : 4) * lin + 6.0 * lora_params;
    double att = (double)c->n_layers * 4.0 * (T / 2.0) * q * 3; /* fwd + 2x bwd */
    return (per_tok + att) * B * T;
}

/* One configuration, in this process: prints a JSON line. */
static int one(const char *path, int full, int threads, int bf16) {
    rein_set_threads(threads);
    rein_matmul_set_bf16(bf16);
    rein_model *m;
    if (rein_model_load(path, &m)) {
        fprintf(stderr, "%s\n", rein_last_error());
        return 1;
    }
    if (!full) {
        rein_lora_params lp = rein_lora_default_params();
        if (rein_lora_attach(m, &lp)) return 1;
    }
    rein_train_state *ts;
    if (rein_train_state_new(m, B * T, full, &ts)) {
        fprintf(stderr, "%s\n", rein_last_error());
        return 1;
    }
    rein_param_list pl = {0};
    rein_adamw opt;
    if (rein_train_param_list(m, ts, &pl) || rein_adamw_init(&opt, pl.total)) return 1;
    rein_adamw_params ap = rein_adamw_default_params();
    int32_t tokens[B * T], targets[B * T], cu[B + 1];
    rein_rng rng;
    rein_rng_seed(&rng, 1);
    for (int i = 0; i < B * T; i++) tokens[i] = (int32_t)(rein_rng_u64(&rng) % 49000);
    for (int s = 0; s <= B; s++) cu[s] = s * T;
    for (int i = 0; i < B * T; i++) targets[i] = (i % T == T - 1) ? -1 : tokens[i + 1];
    double best = 1e30, losses[STEPS + 1];
    for (int step = 0; step <= STEPS; step++) {
        double t0 = rein_time_now(), loss;
        rein_train_zero_grads(m, ts);
        rein_train_forward(m, ts, tokens, cu, B);
        rein_lm_head_xent(m, ts, targets, 1.0f / (B * (T - 1)), &loss);
        losses[step] = loss;
        rein_train_backward(m, ts);
        float gs;
        rein_grad_clip_scale(&pl, 1.0, &gs);
        rein_adamw_step_scaled(&opt, &pl, &ap, ap.lr, gs);
        double dt = rein_time_now() - t0;
        if (step > 0 && dt < best) best = dt; /* step 0 warms up */
    }
    const rein_model_config *c = rein_model_get_config(m);
    printf("{\"tokens_per_s\": %.2f, \"step_s\": %.4f, \"peak_rss_mb\": %.1f, \"flops\": %.6g, "
           "\"bf16\": %d, \"losses\": [", B * T / best, best, bench_peak_rss_mb(),
           step_flops(c, full, rein_lora_n_params(m)), rein_matmul_bf16());
    for (int i = 0; i <= STEPS; i++) printf("%s%.6f", i ? ", " : "", losses[i]);
    printf("]}\n");
    rein_adamw_free(&opt);
    rein_params_free(&pl);
    rein_train_state_free(ts);
    rein_model_free(m);
    return 0;
}

/* The largest relative difference between the step losses of two runs. */
static double loss_gap(const cJSON *a, const cJSON *b) {
    const cJSON *la = cJSON_GetObjectItem(a, "losses"), *lb = cJSON_GetObjectItem(b, "losses");
    double gap = 0;
    for (int i = 0; i < cJSON_GetArraySize(la) && i < cJSON_GetArraySize(lb); i++) {
        double x = cJSON_GetNumberValue(cJSON_GetArrayItem(la, i));
        double y = cJSON_GetNumberValue(cJSON_GetArrayItem(lb, i));
        gap = fmax(gap, fabs(x - y) / fabs(y));
    }
    return gap;
}

/* PyTorch's tokens/s for one configuration, as run by default (tuned = 0) or tuned; 0 if absent. */
static double torch_tps(const char *mode, int threads, int tuned) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%spython3 tools/torch_train_bench.py %s %d %d %d 2 2>/dev/null",
             tuned ? "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE "
                     "MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 "
                   : "",
             mode, threads, B, T);
    cJSON *r = bench_run_json(cmd);
    double tps = r ? bench_num(r, "tokens_per_s") : 0;
    cJSON_Delete(r);
    return tps;
}

/* The FP32 FMA peak of th of the n_cores cores, GFLOP/s: REIN_PEAK_GFLOPS (all cores) scaled, or
 * measured now with the widest FMAs the CPU has. */
static double peak_now(int th, long n_cores) {
    const char *pe = getenv("REIN_PEAK_GFLOPS");
    if (pe) return atof(pe) * th / n_cores;
    int wide = 0;
#if defined(__x86_64__)
    wide = __builtin_cpu_supports("avx512f");
#endif
    double p = bench_fma_peak(th, wide);
    return p > 0 ? p : 520.0 * th / n_cores;
}

int main(int argc, char **argv) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (argc == 6 && !strcmp(argv[1], "--one"))
        return one(argv[2], !strcmp(argv[3], "full"), atoi(argv[4]), atoi(argv[5]));
    if (argc > 1) path = argv[1];
    long n_cores = sysconf(_SC_NPROCESSORS_ONLN); /* REIN_PEAK_GFLOPS is of all of them */
    if (n_cores < 1) n_cores = 1;
    double peaks[2][3] = {{0}}; /* [full][threads]: the peak each f32 row was taken against */
    int have_torch = system("python3 -c 'import torch, transformers, peft' >/dev/null 2>&1") == 0;
    printf("== training: %s, %d x %d tokens a step; products f32, or BF16 with f32 accumulation\n",
           path, B, T);
    printf("%-5s %-4s %-7s %9s %8s %6s %9s %8s | %11s %6s | %11s %6s\n", "mode", "prec", "threads",
           "rein t/s", "RSS MB", "MFU", "step s", "loss gap", "torch dflt", "ratio", "torch tuned",
           "ratio");
    for (int full = 1; full >= 0; full--)
        for (int th = 1; th <= 2; th++) {
            const char *mode = full ? "full" : "lora";
            double td = have_torch ? torch_tps(mode, th, 0) : 0;
            double tt = have_torch ? torch_tps(mode, th, 1) : 0;
            cJSON *f32 = NULL;
            double peak = 0;
            for (int bf16 = 0; bf16 <= 1; bf16++) {
                char cmd[1024];
                snprintf(cmd, sizeof cmd, "%s --one %s %s %d %d", argv[0], path, mode, th, bf16);
                if (!bf16) peak = peak_now(th, n_cores);
                cJSON *r = bench_run_json(cmd);
                if (!bf16) peaks[full][th] = peak = REIN_MAX(peak, peak_now(th, n_cores));
                if (!r) {
                    printf("%-5s %-4s %-7d failed\n", mode, bf16 ? "bf16" : "f32", th);
                    continue;
                }
                if (bf16 && !bench_num(r, "bf16")) { /* no AVX512_BF16 here */
                    cJSON_Delete(r);
                    continue;
                }
                double tps = bench_num(r, "tokens_per_s"), st = bench_num(r, "step_s");
                double mfu = bench_num(r, "flops") / st / (peak * 1e9);
                char gap[16] = "-", d[32] = "n/a", dr[16] = "-", t[32] = "n/a", tr[16] = "-";
                if (bf16 && f32) snprintf(gap, sizeof gap, "%.1e", loss_gap(r, f32));
                if (td > 0) {
                    snprintf(d, sizeof d, "%.1f", td);
                    snprintf(dr, sizeof dr, "%.2fx", tps / td);
                }
                if (tt > 0) {
                    snprintf(t, sizeof t, "%.1f", tt);
                    snprintf(tr, sizeof tr, "%.2fx", tps / tt);
                }
                printf("%-5s %-4s %-7d %9.1f %8.0f %5.1f%% %9.3f %8s | %11s %6s | %11s %6s\n", mode,
                       bf16 ? "bf16" : "f32", th, tps, bench_num(r, "peak_rss_mb"), 100 * mfu, st,
                       gap, d, dr, t, tr);
                fflush(stdout);
                if (bf16)
                    cJSON_Delete(r);
                else
                    f32 = r;
            }
            cJSON_Delete(f32);
        }
    if (!have_torch) printf("(PyTorch not importable: pip install torch transformers peft to compare)\n");
    printf("MFU against the FP32 FMA peak of the threads used, measured around each f32 row "
           "(GFLOP/s: full %.0f and %.0f, LoRA %.0f and %.0f at 1 and 2 threads; BF16 rows too); "
           "loss gap: the largest relative difference of the %d step losses from the f32 run's; "
           "ratio = rein / PyTorch (f32) tokens/s\n",
           peaks[1][1], peaks[1][2], peaks[0][1], peaks[0][2], STEPS + 1);
    return 0;
}
