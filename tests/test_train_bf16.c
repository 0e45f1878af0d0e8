/* test_train_bf16.c - training with BF16 products follows the f32 loss curve.
 *
 * The default model with a LoRA adapter (rank 8, every linear layer) takes the same 10 AdamW steps
 * on the same text twice: with f32 products and with BF16 products (rein_matmul_set_bf16; f32
 * weights, gradients and accumulation). Each step's loss must stay within 2% of the f32 run's, both
 * runs must learn (the last loss well below the first), and the two must not be identical (the
 * BF16 products really ran). The kernels' own accuracy against an exact reference is in
 * test_kernels.
 */
#include "base/base.h"
#include "kernels/matmul.h"
#include "model/train.h"
#include "train/optim.h"
#include "train/params.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

enum { STEPS = 10, MAX_T = 160 };

static const char text[] =
    "A reward model learns from comparisons: people read two answers to the same question and say "
    "which one they prefer. The model gives each answer a score, and training pushes the score of "
    "the preferred answer above the other. Direct preference optimisation skips the reward model "
    "and raises the probability of the preferred answer against a frozen reference instead. Both "
    "need many comparisons, written by people who agree on what a good answer is, and both can be "
    "fooled by answers that are long rather than helpful.";

/* Losses of STEPS steps on tokens[0..n), products in BF16 or not. */
static void run(rein_model *m, const int32_t *tokens, int n, int bf16, double *losses) {
    rein_matmul_set_bf16(bf16);
    rein_lora_params lp = rein_lora_default_params();
    lp.rank = 8;
    lp.alpha = 16;
    CHECK(rein_lora_attach(m, &lp) == REIN_OK);
    rein_train_state *ts = NULL;
    CHECK(rein_train_state_new(m, n, 0, &ts) == REIN_OK);
    rein_param_list pl = {0};
    rein_adamw opt;
    CHECK(rein_train_param_list(m, ts, &pl) == REIN_OK && rein_adamw_init(&opt, pl.total) == REIN_OK);
    rein_adamw_params ap = rein_adamw_default_params();
    int32_t targets[MAX_T], cu[2] = {0, n};
    for (int i = 0; i < n; i++) targets[i] = i + 1 < n ? tokens[i + 1] : -1;
    for (int s = 0; s < STEPS; s++) {
        rein_train_zero_grads(m, ts);
        rein_train_forward(m, ts, tokens, cu, 1);
        rein_lm_head_xent(m, ts, targets, 1.0f / (float)(n - 1), &losses[s]);
        losses[s] /= n - 1;
        rein_train_backward(m, ts);
        rein_grad_clip(&pl, 1.0);
        rein_adamw_step(&opt, &pl, &ap, 1e-3f);
    }
    rein_adamw_free(&opt);
    rein_params_free(&pl);
    rein_train_state_free(ts);
    rein_lora_detach(m);
    rein_matmul_set_bf16(0);
}

int main(void) {
    const char *path = test_default_model();
    if (!path) test_skip("the default model is not downloaded (make model)");
    rein_matmul_set_bf16(1);
    if (!rein_matmul_bf16()) test_skip("no BF16 products here (no AVX512_BF16, or a BLAS=openblas build)");
    rein_matmul_set_bf16(0);
    rein_set_threads(2);
    rein_model *m = NULL;
    CHECK(rein_model_load(path, &m) == REIN_OK);
    rein_tokens tok = {0};
    CHECK(rein_tokenize(rein_model_tokenizer(m), text, strlen(text), 0, &tok) == REIN_OK);
    int n = (int)REIN_MIN(tok.n, (size_t)MAX_T);
    CHECK(n > 64);

    double f32[STEPS], bf16[STEPS], worst = 0;
    run(m, tok.ids, n, 0, f32);
    run(m, tok.ids, n, 1, bf16);
    int same = 1;
    for (int s = 0; s < STEPS; s++) {
        double rel = fabs(bf16[s] - f32[s]) / f32[s];
        worst = fmax(worst, rel);
        same &= bf16[s] == f32[s];
        printf("step %2d: loss f32 %.5f  bf16 %.5f  (%.2f%%)\n", s + 1, f32[s], bf16[s], 100 * rel);
        CHECKF(rel <= 0.02, "step %d: bf16 loss %.5f is %.2f%% from f32's %.5f", s + 1, bf16[s],
               100 * rel, f32[s]);
    }
    CHECKF(f32[STEPS - 1] < 0.7 * f32[0] && bf16[STEPS - 1] < 0.7 * bf16[0],
           "both runs should learn: f32 %.4f -> %.4f, bf16 %.4f -> %.4f", f32[0], f32[STEPS - 1],
           bf16[0], bf16[STEPS - 1]);
    CHECKF(!same, "the bf16 run gave exactly the f32 losses: its products did not run in BF16");
    printf("bf16 loss curve within %.2f%% of f32's over %d steps\n", 100 * worst, STEPS);
    rein_tokens_free(&tok);
    rein_model_free(m);
    return test_finish();
}
