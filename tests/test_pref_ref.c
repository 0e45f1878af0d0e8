/* test_pref_ref.c - the preference losses against PyTorch (tools/gen_pref_fixture.py).
 *
 * On a tiny random Llama: the reward model's Bradley-Terry loss (a ranking with a tie, a pair with
 * a margin, a ranking of four; reward centring on; one response with unlearned tokens after it)
 * and the gradient of the head and of every base weight, then ten AdamW steps; the same loss
 * through PEFT LoRA adapters (head included). DPO's sigmoid (label smoothing 0.1), IPO and hinge
 * losses: the cached reference log-probabilities, loss and every gradient with the policy at the
 * reference, ten AdamW steps (the policy moves away from the fixed reference), and LoRA with a
 * random B (the reference is the base with the adapter switched off). Tolerances as the training
 * pass's: |a-b| <= 1e-5 + 1e-4 |b| for gradients, 1e-5 for losses; the worst is printed.
 */
#include "base/base.h"
#include "testutil.h"
#include "train/dpo.h"
#include "train/params.h"
#include "train/reward.h"

#include <math.h>
#include <string.h>

static const char *model_path = "tests/fixtures/pref/tiny.gguf";

static int64_t arr(const rein_gguf *g, const char *key, const void **data) {
    rein_gguf_value_type t;
    int64_t n = 0;
    *data = NULL;
    CHECK_OK(rein_gguf_get_arr(g, key, &t, &n, data));
    return n;
}

static int32_t arr_i32(const void *data, int64_t i) {
    int32_t v;
    memcpy(&v, (const char *)data + 4 * i, 4);
    return v;
}

static float f32(const rein_gguf *g, const char *key) {
    float v = NAN;
    CHECK_OK(rein_gguf_get_f32(g, key, &v));
    return v;
}

/* The fixture's examples as an example set (records and ranks as stored). */
static rein_example_set *load_examples(const rein_gguf *ref) {
    const void *tok, *mask, *lens, *rec, *rank;
    arr(ref, "ref.tokens", &tok);
    arr(ref, "ref.mask", &mask);
    int64_t n = arr(ref, "ref.lens", &lens);
    arr(ref, "ref.record", &rec);
    arr(ref, "ref.rank", &rank);
    rein_example_set *s = rein_calloc(1, sizeof *s);
    s->ex = rein_calloc((size_t)n, sizeof *s->ex);
    s->n = (size_t)n;
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        rein_example *e = &s->ex[i];
        e->n = (size_t)arr_i32(lens, i);
        e->tokens = rein_malloc(sizeof(int32_t) * e->n);
        e->mask = rein_malloc(e->n);
        for (size_t t = 0; t < e->n; t++) {
            e->tokens[t] = arr_i32(tok, off + (int64_t)t);
            e->mask[t] = (uint8_t)arr_i32(mask, off + (int64_t)t);
        }
        off += (int64_t)e->n;
        e->record = (size_t)arr_i32(rec, i);
        e->rank = arr_i32(rank, i);
        e->line = (int)e->record + 1;
    }
    return s;
}

/* Compare n floats with |a-b| <= atol + rtol |b|; print the worst as a fraction of the bound. */
static int compare(const char *what, const float *a, const rein_gguf *ref, const char *tensor) {
    const rein_gguf_tensor *t = rein_gguf_find_tensor(ref, tensor);
    CHECKF(t != NULL, "fixture lacks %s", tensor);
    if (!t) return 0;
    float *b = rein_malloc(sizeof(float) * (size_t)t->n_elements);
    CHECK_OK(rein_gguf_tensor_f32(t, b));
    double worst = 0, wa = 0, wb = 0;
    for (int64_t i = 0; i < t->n_elements; i++) {
        double r = fabs((double)a[i] - b[i]) / (1e-5 + 1e-4 * fabs(b[i]));
        if (r > worst || isnan(a[i])) {
            worst = isnan(a[i]) ? INFINITY : r;
            wa = a[i];
            wb = b[i];
        }
    }
    CHECKF(worst <= 1, "%s: worst %g vs %g (%.3f of the bound)", what, wa, wb, worst);
    rein_free(b);
    return worst <= 1;
}

/* Every gradient of pl against fixture tensors named prefix + (span name), LoRA spans as
 * "blk.0.attn_q.A". Spans the fixture lacks must have a zero gradient (the LM head of a reward
 * model). Prints a summary line. */
static void compare_grads(const char *label, const rein_param_list *pl, const rein_gguf *ref,
                          const char *prefix) {
    int n_ok = 0, n_zero = 0;
    for (int i = 0; i < pl->n; i++) {
        char tn[160];
        const char *nm = pl->spans[i].name;
        size_t l = strlen(nm);
        if (l > 7 && !strcmp(nm + l - 7, ".lora_a")) snprintf(tn, sizeof tn, "%s%.*s.A", prefix, (int)(l - 7), nm);
        else if (l > 7 && !strcmp(nm + l - 7, ".lora_b")) snprintf(tn, sizeof tn, "%s%.*s.B", prefix, (int)(l - 7), nm);
        else snprintf(tn, sizeof tn, "%s%s", prefix, nm);
        if (!rein_gguf_find_tensor(ref, tn)) {
            double s = 0;
            for (int64_t k = 0; k < pl->spans[i].n; k++) s += fabs(pl->spans[i].g[k]);
            CHECKF(s == 0, "%s: no reference and a non-zero gradient", nm);
            n_zero++;
            continue;
        }
        n_ok += compare(nm, pl->spans[i].g, ref, tn);
    }
    printf("  %s: %d of %d gradients within |a-b| <= 1e-5 + 1e-4|b|%s\n", label, n_ok,
           pl->n - n_zero, n_zero ? " (the unused LM head's is exactly 0)" : "");
}

static void set_lora(rein_param_list *pl, const rein_gguf *ref) {
    for (int i = 0; i < pl->n; i++) {
        const char *nm = pl->spans[i].name;
        size_t l = strlen(nm);
        if (l < 8 || strncmp(nm + l - 7, ".lora_", 6)) continue;
        char tn[160];
        snprintf(tn, sizeof tn, "lora.%.*s.%c", (int)(l - 7), nm, nm[l - 1] == 'a' ? 'A' : 'B');
        const rein_gguf_tensor *t = rein_gguf_find_tensor(ref, tn);
        CHECKF(t && t->n_elements == pl->spans[i].n, "%s", tn);
        if (t) CHECK_OK(rein_gguf_tensor_f32(t, pl->spans[i].w));
    }
}

static void zero(const rein_param_list *pl) {
    for (int i = 0; i < pl->n; i++) memset(pl->spans[i].g, 0, sizeof(float) * (size_t)pl->spans[i].n);
}

static int total_tokens(const rein_example_set *s) {
    int t = 0;
    for (size_t i = 0; i < s->n; i++) t += (int)s->ex[i].n;
    return t;
}

/* One pass of an objective over all of its items, as one micro-batch; the mean loss. */
static double full_pass(const rein_objective *obj, rein_model *m, rein_train_state *ts,
                        const rein_param_list *pl) {
    size_t items[64];
    for (size_t i = 0; i < obj->n_items; i++) items[i] = i;
    zero(pl);
    double loss = 0;
    CHECK_OK(obj->micro_step(obj->ctx, m, ts, items, (int)obj->n_items,
                             1.0f / (float)obj->n_items, &loss));
    return loss / (double)obj->n_items;
}

static rein_adamw_params adam_params(const rein_gguf *ref) {
    rein_adamw_params ap = rein_adamw_default_params();
    ap.lr = f32(ref, "ref.lr");
    ap.weight_decay = f32(ref, "ref.weight_decay");
    return ap;
}

/* Ten AdamW steps with clipping; the worst loss difference against ref key `steps`. */
static void adam_steps(const char *label, const rein_objective *obj, rein_model *m,
                       rein_train_state *ts, const rein_param_list *pl, const rein_gguf *ref,
                       const char *steps) {
    const void *data;
    int64_t ns = arr(ref, steps, &data);
    rein_adamw_params ap = adam_params(ref);
    rein_adamw opt;
    CHECK_OK(rein_adamw_init(&opt, pl->total));
    double worst = 0, first = 0, last = 0;
    for (int64_t s = 0; s < ns; s++) {
        float want;
        memcpy(&want, (const char *)data + 4 * s, 4);
        double l = full_pass(obj, m, ts, pl);
        worst = fmax(worst, fabs(l - want));
        if (s == 0) first = l;
        last = l;
        rein_grad_clip(pl, f32(ref, "ref.clip"));
        rein_adamw_step(&opt, pl, &ap, ap.lr);
    }
    printf("  %s: 10 AdamW steps %.6f -> %.6f, worst loss difference %.2g (bound 1e-5)\n", label,
           first, last, worst);
    CHECK(ns == 10 && worst <= 1e-5);
    rein_adamw_free(&opt);
}

static rein_lora_params lora_params(const rein_gguf *ref) {
    uint32_t rank = 0;
    CHECK_OK(rein_gguf_get_u32(ref, "ref.lora.rank", &rank));
    rein_lora_params lp = rein_lora_default_params();
    lp.rank = (int32_t)rank;
    lp.alpha = f32(ref, "ref.lora.alpha");
    lp.targets = REIN_LORA_ALL;
    return lp;
}

static void reward_model(void) {
    printf("== reward model (Bradley-Terry, centring %.2g)\n", 0.01);
    rein_gguf *ref;
    CHECK_OK(rein_gguf_open("tests/fixtures/pref/rm.ref.gguf", &ref));
    if (!ref) return;
    rein_example_set *set = load_examples(ref);
    const void *md;
    int64_t n_rec = arr(ref, "ref.margins", &md);
    float margins[16];
    memcpy(margins, md, sizeof(float) * (size_t)n_rec);
    rein_pref_set ps;
    CHECK_OK(rein_pref_set_build(set, margins, &ps));
    CHECK(ps.n_groups == 3 && ps.n_pairs == 2 + 1 + 6 && ps.n_tied == 1);
    int cap = total_tokens(set);
    float center = f32(ref, "ref.center");

    for (int lora = 0; lora <= 1; lora++) {
        rein_model *m;
        CHECK_OK(rein_model_load(model_path, &m));
        if (!m) break;
        if (lora) {
            rein_lora_params lp = lora_params(ref);
            CHECK_OK(rein_lora_attach(m, &lp));
        }
        rein_train_state *ts;
        CHECK_OK(rein_train_state_new(m, cap, !lora, &ts));
        rein_reward_head head;
        CHECK_OK(rein_reward_head_init(&head, rein_model_get_config(m)->dim, 1));
        CHECK_OK(rein_gguf_tensor_f32(rein_gguf_find_tensor(ref, "head.weight"), head.w));
        CHECK_OK(rein_gguf_tensor_f32(rein_gguf_find_tensor(ref, "head.bias"), head.b));
        rein_rm_ctx ctx;
        rein_objective obj;
        CHECK_OK(rein_rm_objective(&ctx, &ps, NULL, &head, center, cap, &obj));
        rein_param_list pl = {0};
        CHECK_OK(rein_train_param_list(m, ts, &pl));
        CHECK_OK(obj.extra_params(obj.ctx, &pl));
        if (lora) set_lora(&pl, ref);
        double loss = full_pass(&obj, m, ts, &pl);
        float want = f32(ref, lora ? "ref.lora.loss" : "ref.loss");
        printf("  %s: loss %.7f, torch %.7f\n", lora ? "LoRA (PEFT)" : "full", loss, want);
        CHECK(fabs(loss - want) <= 1e-5);
        compare_grads(lora ? "LoRA + head" : "full + head", &pl, ref, lora ? "lora_grad." : "grad.");
        if (!lora) adam_steps("full + head", &obj, m, ts, &pl, ref, "ref.steps_loss");
        rein_params_free(&pl);
        rein_rm_ctx_free(&ctx);
        rein_reward_head_free(&head);
        rein_train_state_free(ts);
        rein_model_free(m);
    }
    rein_pref_set_free(&ps);
    rein_example_set_free(set);
    rein_gguf_free(ref);
}

static void dpo(void) {
    rein_gguf *ref;
    CHECK_OK(rein_gguf_open("tests/fixtures/pref/dpo.ref.gguf", &ref));
    if (!ref) return;
    rein_example_set *set = load_examples(ref);
    rein_pref_set ps;
    CHECK_OK(rein_pref_set_build(set, NULL, &ps));
    CHECK(ps.n_pairs == 3);
    int cap = total_tokens(set);
    const void *rl;
    int64_t n_ref = arr(ref, "ref.ref_logps", &rl);
    CHECK(n_ref == (int64_t)set->n);
    static const char *names[] = {"sigmoid", "ipo", "hinge"};
    for (int lt = 0; lt < 3; lt++) {
        rein_dpo_params p = rein_dpo_default_params();
        p.beta = f32(ref, "ref.beta");
        p.loss = (rein_dpo_loss)lt;
        if (p.loss == REIN_DPO_SIGMOID) p.label_smoothing = f32(ref, "ref.label_smoothing");
        printf("== DPO %s (beta %g%s)\n", names[lt], p.beta,
               p.label_smoothing > 0 ? ", label smoothing 0.1" : "");
        for (int lora = 0; lora <= 1; lora++) {
            rein_model *m;
            CHECK_OK(rein_model_load(model_path, &m));
            if (!m) break;
            rein_lora_params lp = lora_params(ref);
            if (lora) CHECK_OK(rein_lora_attach(m, &lp));
            rein_train_state *ts;
            CHECK_OK(rein_train_state_new(m, cap, !lora, &ts));
            rein_param_list pl = {0};
            CHECK_OK(rein_train_param_list(m, ts, &pl));
            if (lora) set_lora(&pl, ref);
            rein_dpo_ctx ctx;
            rein_objective obj;
            CHECK_OK(rein_dpo_objective(&ctx, &p, &ps, NULL, cap, &obj));
            /* the reference: the initial weights; with an adapter, the base (switched off) */
            CHECK_OK(rein_dpo_reference(&ctx, m, cap));
            CHECK(!lora || rein_lora_is_enabled(m));
            double worst = 0;
            for (size_t i = 0; i < set->n; i++) {
                float w;
                memcpy(&w, (const char *)rl + 4 * i, 4);
                worst = fmax(worst, fabs(ctx.ref_train[i] - w));
            }
            CHECKF(worst <= 1e-5 && ctx.ref_train[0] < -1, "reference log-probabilities differ "
                   "by %g (first %g)", worst, ctx.ref_train[0]);
            double loss = full_pass(&obj, m, ts, &pl);
            char key[96], prefix[64];
            snprintf(key, sizeof key, lora ? "ref.%s.lora.loss" : "ref.%s.loss", names[lt]);
            float want = f32(ref, key);
            printf("  %s: reference log-probs within %.2g; loss %.7f, torch %.7f\n",
                   lora ? "LoRA (PEFT), reference = adapter off" : "full, policy = reference",
                   worst, loss, want);
            CHECK(fabs(loss - want) <= 1e-5);
            snprintf(prefix, sizeof prefix, lora ? "lora_grad.%s." : "grad.%s.", names[lt]);
            compare_grads(lora ? "LoRA" : "full", &pl, ref, prefix);
            if (!lora) {
                snprintf(key, sizeof key, "ref.%s.steps_loss", names[lt]);
                adam_steps("full", &obj, m, ts, &pl, ref, key);
            }
            rein_dpo_ctx_free(&ctx);
            rein_params_free(&pl);
            rein_train_state_free(ts);
            rein_model_free(m);
        }
    }
    /* the losses' closed forms at a few points (TRL's definitions) */
    rein_dpo_params p = rein_dpo_default_params();
    double dz;
    CHECK(fabs(rein_dpo_pair_loss(&p, 0, &dz) - log(2.0)) < 1e-12 && fabs(dz + 0.05) < 1e-7);
    p.loss = REIN_DPO_HINGE;
    CHECK(rein_dpo_pair_loss(&p, 20, &dz) == 0 && dz == 0);
    CHECK(fabs(rein_dpo_pair_loss(&p, 5, &dz) - 0.5) < 1e-6 && fabs(dz + 0.1) < 1e-7);
    p.loss = REIN_DPO_IPO;
    CHECK(fabs(rein_dpo_pair_loss(&p, 5, &dz)) < 1e-12 && fabs(dz) < 1e-6); /* 1/(2 beta) = 5 */
    rein_pref_set_free(&ps);
    rein_example_set_free(set);
    rein_gguf_free(ref);
}

int main(void) {
    reward_model();
    dpo();
    return test_finish();
}
