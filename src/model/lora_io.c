/* lora_io.c - LoRA adapters to and from PEFT's folder (adapter_model.safetensors +
 * adapter_config.json), and the HF layout helpers export shares; see lora_io.h.
 *
 * Loading is two passes over the safetensors file: the first checks every tensor's name and
 * shape against the config and the model and that each targeted layer has both A and B, the
 * second attaches the adapter and copies the values, so that a bad adapter leaves the model as
 * it was.
 */
#include "model/lora_io.h"
#include "base/base.h"
#include "formats/safetensors.h"
#include "model/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const HF_LINEAR[REIN_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

#define PEFT_PREFIX "base_model.model.model.layers."

const char *rein_hf_linear_name(int which) {
    REIN_ASSERT(which >= 0 && which < REIN_LIN_COUNT);
    return HF_LINEAR[which];
}

/* The module's short name ("q_proj"), as target_modules lists it. */
static const char *short_name(int which) {
    return strchr(HF_LINEAR[which], '.') + 1;
}

void rein_hf_rows_from_gguf(float *dst, const float *src, int n_head, int head_dim, int64_t cols) {
    int half = head_dim / 2;
    for (int h = 0; h < n_head; h++)
        for (int j = 0; j < half; j++)
            for (int s = 0; s < 2; s++)
                memcpy(dst + ((int64_t)h * head_dim + s * half + j) * cols,
                       src + ((int64_t)h * head_dim + 2 * j + s) * cols, sizeof(float) * (size_t)cols);
}

void rein_hf_rows_to_gguf(float *dst, const float *src, int n_head, int head_dim, int64_t cols) {
    int half = head_dim / 2;
    for (int h = 0; h < n_head; h++)
        for (int j = 0; j < half; j++)
            for (int s = 0; s < 2; s++)
                memcpy(dst + ((int64_t)h * head_dim + 2 * j + s) * cols,
                       src + ((int64_t)h * head_dim + s * half + j) * cols, sizeof(float) * (size_t)cols);
}

rein_status rein_hf_make_dir(const char *dir) {
    if (mkdir(dir, 0755) == 0) return REIN_OK;
    struct stat sb;
    if (errno == EEXIST && stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return REIN_OK;
    return rein_error(REIN_ERR_IO, "%s: cannot create the folder: %s", dir, strerror(errno));
}

cJSON *rein_hf_json_float(float v) {
    char s[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)v);
        if (strtof(s, NULL) == v) break;
    }
    /* JSON needs a digit after an exponent-free integer-looking value only for readers that care
     * about int vs float; python's json gives an int for "32", which HF accepts for floats */
    return cJSON_CreateRaw(s);
}

rein_status rein_hf_write_json(const cJSON *root, const char *path) {
    char *text = cJSON_Print(root);
    if (!text) return rein_error(REIN_ERR_NOMEM, "%s: out of memory printing JSON", path);
    rein_atomic_file af;
    rein_status st = rein_atomic_open(&af, path);
    if (!st) {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, af.fp) != n || fputc('\n', af.fp) == EOF) {
            rein_atomic_abort(&af);
            st = rein_error(REIN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        } else {
            st = rein_atomic_commit(&af);
        }
    }
    cJSON_free(text);
    return st;
}

/* The (out, n_head) of q and k, for the row permutation; n_head 0 for the other layers. */
static int perm_heads(const rein_model *m, int which) {
    if (which == REIN_LIN_Q) return m->cfg.n_heads;
    if (which == REIN_LIN_K) return m->cfg.n_kv_heads;
    return 0;
}

/* ---- save ------------------------------------------------------------------------------------ */

static rein_status write_config(const rein_model *m, const char *path, const char *base) {
    const rein_lora_params *p = &m->lora->p;
    cJSON *c = cJSON_CreateObject();
    cJSON *targets = cJSON_CreateArray();
    int ok = c && targets;
    for (int w = 0; ok && w < REIN_LIN_COUNT; w++)
        if (p->targets & (1u << w))
            ok = cJSON_AddItemToArray(targets, cJSON_CreateString(short_name(w)));
    /* the keys PEFT writes for a plain LoRA, in its (alphabetical) order */
    ok = ok && cJSON_AddObjectToObject(c, "alpha_pattern");
    ok = ok && cJSON_AddNullToObject(c, "auto_mapping");
    ok = ok && (base ? cJSON_AddStringToObject(c, "base_model_name_or_path", base)
                     : cJSON_AddNullToObject(c, "base_model_name_or_path"));
    ok = ok && cJSON_AddStringToObject(c, "bias", "none");
    ok = ok && cJSON_AddFalseToObject(c, "fan_in_fan_out");
    ok = ok && cJSON_AddTrueToObject(c, "inference_mode");
    ok = ok && cJSON_AddTrueToObject(c, "init_lora_weights");
    ok = ok && cJSON_AddNullToObject(c, "layers_pattern");
    ok = ok && cJSON_AddNullToObject(c, "layers_to_transform");
    ok = ok && cJSON_AddItemToObject(c, "lora_alpha", rein_hf_json_float(p->alpha));
    ok = ok && cJSON_AddNumberToObject(c, "lora_dropout", 0.0);
    ok = ok && cJSON_AddNullToObject(c, "modules_to_save");
    ok = ok && cJSON_AddStringToObject(c, "peft_type", "LORA");
    ok = ok && cJSON_AddNumberToObject(c, "r", p->rank);
    ok = ok && cJSON_AddObjectToObject(c, "rank_pattern");
    ok = ok && cJSON_AddNullToObject(c, "revision");
    if (ok) {
        ok = cJSON_AddItemToObject(c, "target_modules", targets);
        if (ok) targets = NULL;
    }
    ok = ok && cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
    ok = ok && cJSON_AddFalseToObject(c, "use_dora");
    ok = ok && cJSON_AddFalseToObject(c, "use_rslora");
    rein_status st = ok ? rein_hf_write_json(c, path) : REIN_ERR_NOMEM;
    cJSON_Delete(targets);
    cJSON_Delete(c);
    return st;
}

rein_status rein_lora_save(const rein_model *m, const char *dir, const char *base_model_name) {
    if (!m->lora) return rein_error(REIN_ERR_INVALID, "no LoRA adapter is attached to save");
    REIN_TRY(rein_hf_make_dir(dir));
    const rein_lora *lo = m->lora;
    const int r = lo->p.rank;
    rein_safetensors_writer *w;
    REIN_TRY(rein_safetensors_writer_new(&w));
    rein_status st = rein_safetensors_set_meta(w, "format", "pt");
    int max_out = 0;
    for (int k = 0; k < REIN_LIN_COUNT; k++) {
        int o, i;
        rein_model_linear_weight(m, 0, k, &o, &i);
        max_out = REIN_MAX(max_out, o);
    }
    float *tmp = rein_malloc(sizeof(float) * (size_t)max_out * r);
    if (!tmp) st = REIN_ERR_NOMEM;
    char name[256];
    for (int l = 0; l < m->cfg.n_layers && !st; l++)
        for (int k = 0; k < REIN_LIN_COUNT && !st; k++) {
            const rein_lora_linear *ll = &lo->lin[l * REIN_LIN_COUNT + k];
            if (!ll->A) continue;
            int o, i;
            rein_model_linear_weight(m, l, k, &o, &i);
            snprintf(name, sizeof name, PEFT_PREFIX "%d.%s.lora_A.weight", l, HF_LINEAR[k]);
            st = rein_safetensors_add(w, name, REIN_TYPE_F32, 2, (int64_t[]){r, i}, ll->A);
            const float *B = ll->B;
            if (perm_heads(m, k)) {
                rein_hf_rows_from_gguf(tmp, B, perm_heads(m, k), m->cfg.head_dim, r);
                B = tmp;
            }
            snprintf(name, sizeof name, PEFT_PREFIX "%d.%s.lora_B.weight", l, HF_LINEAR[k]);
            if (!st) st = rein_safetensors_add(w, name, REIN_TYPE_F32, 2, (int64_t[]){o, r}, B);
        }
    rein_free(tmp);
    size_t plen = strlen(dir) + 64;
    char *path = rein_malloc(plen);
    if (!st && !path) st = REIN_ERR_NOMEM;
    if (!st) {
        snprintf(path, plen, "%s/adapter_model.safetensors", dir);
        st = rein_safetensors_write(w, path);
    }
    if (!st) {
        snprintf(path, plen, "%s/adapter_config.json", dir);
        st = write_config(m, path, base_model_name);
    }
    rein_free(path);
    rein_safetensors_writer_free(w);
    return st;
}

/* ---- load ------------------------------------------------------------------------------------ */

/* A boolean option that must be false (or absent). */
static rein_status want_false(const char *path, const cJSON *c, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, key);
    if (x && !cJSON_IsNull(x) && !cJSON_IsFalse(x))
        return rein_error(REIN_ERR_UNSUPPORTED, "%s: field '%s': rein supports only false", path,
                          key);
    return REIN_OK;
}

/* An option that must be null, absent, or empty (an empty object or array). */
static rein_status want_empty(const char *path, const cJSON *c, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, key);
    if (x && !cJSON_IsNull(x) && !((cJSON_IsObject(x) || cJSON_IsArray(x)) && !x->child))
        return rein_error(REIN_ERR_UNSUPPORTED, "%s: field '%s': rein supports only an empty "
                          "value or null", path, key);
    return REIN_OK;
}

static rein_status target_bit(const char *path, const char *name, uint32_t *targets) {
    const char *dot = strrchr(name, '.');
    const char *s = dot ? dot + 1 : name;
    for (int w = 0; w < REIN_LIN_COUNT; w++)
        if (!strcmp(s, short_name(w))) {
            *targets |= 1u << w;
            return REIN_OK;
        }
    return rein_error(REIN_ERR_UNSUPPORTED, "%s: field 'target_modules': '%s' is not a module "
                      "rein can adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                      "down_proj)", path, name);
}

static rein_status parse_config(const char *path, const char *text, rein_lora_params *p) {
    cJSON *c = cJSON_Parse(text);
    if (!c || !cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return rein_error(REIN_ERR_FORMAT, "%s: not a JSON object", path);
    }
    rein_status st = REIN_OK;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(c, "bias");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(c, "target_modules");
    *p = rein_lora_default_params();
    p->targets = 0;
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        st = rein_error(REIN_ERR_UNSUPPORTED, "%s: field 'peft_type': expected \"LORA\"", path);
    else if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 4096 ||
             r->valuedouble != (int)r->valuedouble)
        st = rein_error(REIN_ERR_FORMAT, "%s: field 'r': expected an integer in 1..4096", path);
    else if (alpha && !(cJSON_IsNumber(alpha) && alpha->valuedouble > 0))
        st = rein_error(REIN_ERR_FORMAT, "%s: field 'lora_alpha': expected a positive number",
                        path);
    else if (bias && !cJSON_IsNull(bias) && !(cJSON_IsString(bias) && !strcmp(bias->valuestring, "none")))
        st = rein_error(REIN_ERR_UNSUPPORTED, "%s: field 'bias': rein supports only \"none\"", path);
    const char *no[] = {"use_rslora", "use_dora", "fan_in_fan_out", "lora_bias"};
    for (size_t i = 0; i < 4 && !st; i++) st = want_false(path, c, no[i]);
    const char *empty[] = {"rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save",
                           "layer_replication"};
    for (size_t i = 0; i < 5 && !st; i++) st = want_empty(path, c, empty[i]);
    if (!st) {
        p->rank = (int32_t)r->valuedouble;
        p->alpha = alpha ? (float)alpha->valuedouble : 8.0f; /* PEFT's default */
        if (cJSON_IsString(tm) && !strcmp(tm->valuestring, "all-linear")) {
            p->targets = REIN_LORA_ALL;
        } else if (cJSON_IsArray(tm) && tm->child) {
            for (const cJSON *x = tm->child; x && !st; x = x->next)
                st = cJSON_IsString(x) ? target_bit(path, x->valuestring, &p->targets)
                                       : rein_error(REIN_ERR_FORMAT, "%s: field 'target_modules': "
                                                    "expected strings", path);
        } else {
            st = rein_error(REIN_ERR_UNSUPPORTED, "%s: field 'target_modules': expected a list of "
                            "module names or \"all-linear\" (a regex is not supported)", path);
        }
    }
    cJSON_Delete(c);
    return st;
}

/* Parse "base_model.model.model.layers.{l}.{module}.lora_{A,B}.weight"; 0 if it is not one. */
static int parse_name(const char *name, int *layer, int *which, int *is_b) {
    size_t np = strlen(PEFT_PREFIX);
    if (strncmp(name, PEFT_PREFIX, np) != 0) return 0;
    const char *s = name + np;
    char *end;
    long l = strtol(s, &end, 10);
    if (end == s || *end != '.' || l < 0 || l > 1000000) return 0;
    s = end + 1;
    for (int w = 0; w < REIN_LIN_COUNT; w++) {
        size_t n = strlen(HF_LINEAR[w]);
        if (strncmp(s, HF_LINEAR[w], n) != 0) continue;
        if (!strcmp(s + n, ".lora_A.weight")) *is_b = 0;
        else if (!strcmp(s + n, ".lora_B.weight")) *is_b = 1;
        else return 0;
        *layer = (int)l;
        *which = w;
        return 1;
    }
    return 0;
}

/* Check every tensor against the config and the model; mark which (layer, linear, A/B) exist. */
static rein_status check_tensors(const rein_model *m, const char *path, const rein_safetensors *st,
                                 const rein_lora_params *p, uint8_t *seen) {
    for (int64_t k = 0; k < rein_safetensors_n_tensors(st); k++) {
        const rein_safetensors_tensor *t = rein_safetensors_tensor_at(st, k);
        int l, w, is_b;
        if (!parse_name(t->name, &l, &w, &is_b))
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s' is not a LoRA weight rein knows "
                              "(expected " PEFT_PREFIX "{i}.self_attn.q_proj.lora_A.weight and the "
                              "like)", path, t->name);
        if (l >= m->cfg.n_layers)
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': layer %d, but the model has %d "
                              "layers (an adapter for another model?)", path, t->name, l,
                              m->cfg.n_layers);
        if (!(p->targets & (1u << w)))
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': module %s is not in the config's "
                              "target_modules", path, t->name, short_name(w));
        if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16"))
            return rein_error(REIN_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s (F32, F16 or BF16 "
                              "expected)", path, t->name, t->dtype);
        int o, i;
        rein_model_linear_weight(m, l, w, &o, &i);
        int64_t want0 = is_b ? o : p->rank, want1 = is_b ? p->rank : i;
        if (t->n_dims != 2 || t->shape[0] != want0 || t->shape[1] != want1)
            return rein_error(REIN_ERR_FORMAT, "%s: tensor '%s': shape (%lld, %lld), expected "
                              "(%lld, %lld) for r = %d on this model (an adapter for another "
                              "model?)", path, t->name, t->n_dims > 0 ? (long long)t->shape[0] : -1,
                              t->n_dims > 1 ? (long long)t->shape[1] : -1, (long long)want0,
                              (long long)want1, p->rank);
        seen[(l * REIN_LIN_COUNT + w) * 2 + is_b] = 1;
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < REIN_LIN_COUNT; w++)
            for (int b = 0; b < 2 && (p->targets & (1u << w)); b++)
                if (!seen[(l * REIN_LIN_COUNT + w) * 2 + b])
                    return rein_error(REIN_ERR_FORMAT, "%s: missing tensor " PEFT_PREFIX
                                      "%d.%s.lora_%c.weight (target_modules names %s)", path, l,
                                      HF_LINEAR[w], b ? 'B' : 'A', short_name(w));
    return REIN_OK;
}

static rein_status fill(rein_model *m, const rein_safetensors *st) {
    const int r = m->lora->p.rank;
    for (int64_t k = 0; k < rein_safetensors_n_tensors(st); k++) {
        const rein_safetensors_tensor *t = rein_safetensors_tensor_at(st, k);
        int l, w, is_b;
        REIN_ASSERT(parse_name(t->name, &l, &w, &is_b));
        rein_lora_linear *ll = &m->lora->lin[l * REIN_LIN_COUNT + w];
        if (!is_b) {
            REIN_TRY(rein_safetensors_tensor_f32(t, ll->A));
        } else if (!perm_heads(m, w)) {
            REIN_TRY(rein_safetensors_tensor_f32(t, ll->B));
        } else {
            float *tmp = rein_malloc(sizeof(float) * (size_t)t->n_elements);
            if (!tmp) return REIN_ERR_NOMEM;
            rein_status s = rein_safetensors_tensor_f32(t, tmp);
            if (!s) rein_hf_rows_to_gguf(ll->B, tmp, perm_heads(m, w), m->cfg.head_dim, r);
            rein_free(tmp);
            REIN_TRY(s);
        }
    }
    return REIN_OK;
}

rein_status rein_lora_load(rein_model *m, const char *dir) {
    size_t plen = strlen(dir) + 64;
    char *cpath = rein_malloc(plen), *wpath = rein_malloc(plen);
    uint8_t *seen = rein_calloc((size_t)m->cfg.n_layers * REIN_LIN_COUNT * 2, 1);
    rein_buf text = {0};
    rein_safetensors *st = NULL;
    rein_lora_params p;
    rein_status s = cpath && wpath && seen ? REIN_OK : REIN_ERR_NOMEM;
    if (!s) {
        snprintf(cpath, plen, "%s/adapter_config.json", dir);
        snprintf(wpath, plen, "%s/adapter_model.safetensors", dir);
        s = rein_read_file(cpath, &text);
    }
    if (!s) s = parse_config(cpath, text.data, &p);
    if (!s) s = rein_safetensors_open(wpath, &st);
    if (!s) s = check_tensors(m, wpath, st, &p, seen);
    if (!s) s = rein_lora_attach(m, &p);
    if (!s) {
        s = fill(m, st);
        if (s) rein_lora_detach(m);
    }
    if (s && s != REIN_ERR_NOMEM) rein_error_wrap(s, "loading LoRA adapter %s: ", dir);
    rein_safetensors_free(st);
    rein_buf_free(&text);
    rein_free(seen);
    rein_free(cpath);
    rein_free(wpath);
    return s;
}
