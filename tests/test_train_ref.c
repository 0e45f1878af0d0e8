/* test_train_ref.c - the training pass against PyTorch (tools/gen_train_fixture.py).
 *
 * For a tiny random Llama with a tied and with an untied head: the logits and the loss of a packed
 * batch of two sequences, the gradient of every weight, and the losses of ten AdamW steps with
 * gradient clipping; then the same for LoRA adapters on every linear layer against PEFT. Tolerances:
 * |a-b| <= 1e-5 + 1e-4 |b| for gradients, 1e-5 for losses (fp32); the worst difference per tensor
 * is printed.
 */
#include "base/base.h"
#include "kernels/matmul.h"
#include "model/train.h"
#include "testutil.h"
#include "train/params.h"

#include <math.h>
#include <string.h>

static void get_i32_arr(const rein_gguf *g, const char *key, int32_t *out, int64_t *n) {
    rein_gguf_value_type t;
    const void *data;
    CHECK_OK(rein_gguf_get_arr(g, key, &t, n, &data));
    for (int64_t i = 0; i < *n; i++) {
        int32_t v;
        memcpy(&v, (const char *)data + 4 * i, 4);
        out[i] = v;
    }
}

static float get_f32(const rein_gguf *g, const char *key) {
    float v = NAN;
    CHECK_OK(rein_gguf_get_f32(g, key, &v));
    return v;
}

static void get_f32_arr(const rein_gguf *g, const char *key, float *out, int64_t *n) {
    rein_gguf_value_type t;
    const void *data;
    CHECK_OK(rein_gguf_get_arr(g, key, &t, n, &data));
    memcpy(out, data, sizeof(float) * (size_t)*n);
}

/* Compare n floats with |a-b| <= atol + rtol |b|; print the worst (as a fraction of the bound). */
static int compare(const char *what, const float *a, const rein_gguf *ref, const char *tensor,
                   double atol, double rtol) {
    const rein_gguf_tensor *t = rein_gguf_find_tensor(ref, tensor);
    CHECKF(t != NULL, "fixture lacks %s", tensor);
    if (!t) return 0;
    float *b = rein_malloc(sizeof(float) * (size_t)t->n_elements);
    CHECK_OK(rein_gguf_tensor_f32(t, b));
    double worst = 0, wa = 0, wb = 0;
    for (int64_t i = 0; i < t->n_elements; i++) {
        double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
        if (r > worst || isnan(a[i])) {
            worst = isnan(a[i]) ? INFINITY : r;
            wa = a[i];
            wb = b[i];
        }
    }
    printf("  %-34s worst %.3f of the bound (rein %.7g, torch %.7g)\n", what, worst, wa, wb);
    CHECKF(worst <= 1, "%s: %g vs %g", what, wa, wb);
    rein_free(b);
    return worst <= 1;
}

/* One packed batch: forward, mean cross-entropy over the targets, backward. */
static double loss_and_grads(rein_model *m, rein_train_state *ts, const int32_t *tokens,
                             const int32_t *targets, const int32_t *cu, int n_seqs) {
    int T = cu[n_seqs], n_t = 0;
    for (int i = 0; i < T; i++) n_t += targets[i] >= 0;
    rein_train_zero_grads(m, ts);
    CHECK_OK(rein_train_forward(m, ts, tokens, cu, n_seqs));
    double sum = 0;
    CHECK_OK(rein_lm_head_xent(m, ts, targets, 1.0f / n_t, &sum));
    CHECK_OK(rein_train_backward(m, ts));
    return sum / n_t;
}

static void run(const char *name) {
    char mpath[256], rpath[256];
    snprintf(mpath, sizeof mpath, "tests/fixtures/train/tiny_%s.gguf", name);
    snprintf(rpath, sizeof rpath, "tests/fixtures/train/tiny_%s.ref.gguf", name);
    printf("== %s head\n", name);
    rein_model *m;
    rein_gguf *ref;
    CHECK_OK(rein_model_load(mpath, &m));
    CHECK_OK(rein_gguf_open(rpath, &ref));
    if (!m || !ref) return;
    const rein_model_config *c = rein_model_get_config(m);
    int32_t tokens[64], targets[64], cu[8];
    int64_t T, nt, ncu;
    get_i32_arr(ref, "ref.tokens", tokens, &T);
    get_i32_arr(ref, "ref.targets", targets, &nt);
    get_i32_arr(ref, "ref.cu_seqlens", cu, &ncu);
    int n_seqs = (int)ncu - 1;

    /* full fine-tuning: loss, logits, every gradient */
    rein_train_state *ts;
    CHECK_OK(rein_train_state_new(m, (int)T, 1, &ts));
    double loss = loss_and_grads(m, ts, tokens, targets, cu, n_seqs);
    float want = get_f32(ref, "ref.loss");
    printf("  loss %.7f, torch %.7f\n", loss, want);
    CHECK(fabs(loss - want) <= 1e-5);
    float *logits = rein_malloc(sizeof(float) * (size_t)T * c->n_vocab);
    rein_matmul_nt(logits, ts->xf, m->output, (int)T, c->dim, c->n_vocab, 0);
    compare("logits", logits, ref, "logits", 1e-5, 1e-4);
    rein_free(logits);
    rein_param_list pl = {0};
    CHECK_OK(rein_train_param_list(m, ts, &pl));
    int n_ok = 0;
    for (int i = 0; i < pl.n; i++) {
        char tn[128];
        snprintf(tn, sizeof tn, "grad.%s", pl.spans[i].name);
        n_ok += compare(pl.spans[i].name, pl.spans[i].g, ref, tn, 1e-5, 1e-4);
    }
    printf("  %d of %d gradients within |a-b| <= 1e-5 + 1e-4|b|\n", n_ok, pl.n);
    CHECK(pl.n == rein_gguf_n_tensors(ref) - 2 - 2 * 7 * 2 * c->n_layers);
    compare("input embeddings", ts->demb, ref, "grad.input_embeds", 1e-5, 1e-4);

    /* gradient accumulation: the two sequences as two micro-batches (each scaled by 1 / all
     * targets of the step) give the gradients of the one packed batch */
    {
        float *packed = rein_malloc(sizeof(float) * (size_t)pl.total);
        int64_t off = 0;
        for (int i = 0; i < pl.n; i++) {
            memcpy(packed + off, pl.spans[i].g, sizeof(float) * (size_t)pl.spans[i].n);
            off += pl.spans[i].n;
        }
        int n_t = 0;
        for (int i = 0; i < T; i++) n_t += targets[i] >= 0;
        rein_train_zero_grads(m, ts);
        double acc_loss = 0;
        for (int s = 0; s < n_seqs; s++) {
            int32_t cu1[2] = {0, cu[s + 1] - cu[s]};
            double part;
            CHECK_OK(rein_train_forward(m, ts, tokens + cu[s], cu1, 1));
            CHECK_OK(rein_lm_head_xent(m, ts, targets + cu[s], 1.0f / n_t, &part));
            CHECK_OK(rein_train_backward(m, ts));
            acc_loss += part;
        }
        double worst = 0;
        off = 0;
        for (int i = 0; i < pl.n; i++)
            for (int64_t k = 0; k < pl.spans[i].n; k++, off++)
                worst = fmax(worst, fabs(pl.spans[i].g[k] - packed[off]) / (1e-6 + 1e-5 * fabs(packed[off])));
        printf("  accumulated micro-batches vs one packed batch: loss %.7f vs %.7f, worst gradient "
               "%.3f of |a-b| <= 1e-6 + 1e-5|b|\n", acc_loss / n_t, loss, worst);
        CHECK(fabs(acc_loss / n_t - loss) <= 1e-6 && worst <= 1);
        rein_free(packed);
    }

    /* ten AdamW steps with clipping, decay on matrices only */
    rein_adamw_params ap = rein_adamw_default_params();
    ap.lr = get_f32(ref, "ref.lr");
    ap.beta1 = get_f32(ref, "ref.beta1");
    ap.beta2 = get_f32(ref, "ref.beta2");
    ap.eps = get_f32(ref, "ref.eps");
    ap.weight_decay = get_f32(ref, "ref.weight_decay");
    float clip = get_f32(ref, "ref.clip");
    float steps[16], norms[16];
    int64_t ns;
    get_f32_arr(ref, "ref.steps_loss", steps, &ns);
    get_f32_arr(ref, "ref.steps_norm", norms, &ns);
    rein_adamw opt;
    CHECK_OK(rein_adamw_init(&opt, pl.total));
    double worst = 0;
    for (int s = 0; s < ns; s++) {
        double l = loss_and_grads(m, ts, tokens, targets, cu, n_seqs);
        double norm = rein_grad_clip(&pl, clip);
        printf("  step %2d: loss %.7f torch %.7f   grad norm %.5f torch %.5f\n", s, l, steps[s],
               norm, norms[s]);
        worst = fmax(worst, fabs(l - steps[s]));
        CHECK(fabs(norm - norms[s]) <= 1e-4 * (1 + norms[s]));
        rein_adamw_step(&opt, &pl, &ap, ap.lr);
    }
    printf("  10 AdamW steps: worst loss difference %.2g (bound 1e-5)\n", worst);
    CHECK(worst <= 1e-5);
    rein_adamw_free(&opt);
    rein_params_free(&pl);
    rein_train_state_free(ts);
    rein_model_free(m);

    /* LoRA on every linear layer, against PEFT with the same A and B */
    CHECK_OK(rein_model_load(mpath, &m));
    uint32_t rank;
    CHECK_OK(rein_gguf_get_u32(ref, "ref.lora.rank", &rank));
    rein_lora_params lp = rein_lora_default_params();
    lp.rank = (int32_t)rank;
    lp.alpha = get_f32(ref, "ref.lora.alpha");
    lp.targets = REIN_LORA_ALL;
    CHECK_OK(rein_lora_attach(m, &lp));
    CHECK_OK(rein_train_state_new(m, (int)T, 0, &ts));
    memset(&pl, 0, sizeof pl);
    CHECK_OK(rein_train_param_list(m, ts, &pl));
    for (int i = 0; i < pl.n; i++) {
        /* "blk.0.attn_q.lora_a" -> fixture "lora.blk.0.attn_q.A" */
        char tn[128];
        snprintf(tn, sizeof tn, "lora.%s", pl.spans[i].name);
        size_t l = strlen(tn);
        tn[l - 7] = 0;
        strcat(tn, pl.spans[i].name[strlen(pl.spans[i].name) - 1] == 'a' ? ".A" : ".B");
        const rein_gguf_tensor *t = rein_gguf_find_tensor(ref, tn);
        CHECKF(t && t->n_elements == pl.spans[i].n, "%s", tn);
        if (t) CHECK_OK(rein_gguf_tensor_f32(t, pl.spans[i].w));
    }
    loss = loss_and_grads(m, ts, tokens, targets, cu, n_seqs);
    want = get_f32(ref, "ref.lora.loss");
    printf("  LoRA loss %.7f, PEFT %.7f\n", loss, want);
    CHECK(fabs(loss - want) <= 1e-5);
    n_ok = 0;
    for (int i = 0; i < pl.n; i++) {
        char tn[128];
        snprintf(tn, sizeof tn, "lora_grad.%s", pl.spans[i].name);
        size_t l = strlen(tn);
        tn[l - 7] = 0;
        strcat(tn, pl.spans[i].name[strlen(pl.spans[i].name) - 1] == 'a' ? ".A" : ".B");
        n_ok += compare(pl.spans[i].name, pl.spans[i].g, ref, tn, 1e-5, 1e-4);
    }
    printf("  %d of %d LoRA gradients within bounds\n", n_ok, pl.n);
    get_f32_arr(ref, "ref.lora.steps_loss", steps, &ns);
    ap.lr = get_f32(ref, "ref.lora.lr");
    CHECK_OK(rein_adamw_init(&opt, pl.total));
    worst = 0;
    for (int s = 0; s < ns; s++) {
        double l = loss_and_grads(m, ts, tokens, targets, cu, n_seqs);
        /* clipping folded into the update here (the full fine-tuning above scales first) */
        float gs;
        rein_grad_clip_scale(&pl, clip, &gs);
        worst = fmax(worst, fabs(l - steps[s]));
        rein_adamw_step_scaled(&opt, &pl, &ap, ap.lr, gs);
    }
    printf("  10 LoRA AdamW steps: worst loss difference %.2g (bound 1e-5)\n", worst);
    CHECK(worst <= 1e-5);
    /* switched off, the trained adapter leaves exactly the base model: its loss is torch's
     * loss of the untouched base */
    rein_lora_set_enabled(m, 0);
    CHECK(!rein_lora_is_enabled(m));
    loss = loss_and_grads(m, ts, tokens, targets, cu, n_seqs);
    printf("  adapter off: loss %.7f, base model in torch %.7f\n", loss, get_f32(ref, "ref.loss"));
    CHECK(fabs(loss - get_f32(ref, "ref.loss")) <= 1e-5);
    rein_lora_set_enabled(m, 1);
    CHECK(fabs(loss_and_grads(m, ts, tokens, targets, cu, n_seqs) - steps[ns - 1]) > 0.01);
    rein_adamw_free(&opt);
    rein_params_free(&pl);
    rein_train_state_free(ts);
    rein_model_free(m);
    rein_gguf_free(ref);
}

int main(void) {
    run("tied");
    run("untied");
    return test_finish();
}
