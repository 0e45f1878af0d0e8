/* model.h - the inside of a Llama-family model: its weights, its cache, its scratch space.
 *
 * Public callers see rein_model and rein_kv_cache as opaque (include/rein.h); the trainers and the
 * generation code inside the library use these definitions. All weights are f32 in one arena, in
 * PyTorch layout (nn.Linear weights (out, in)); every activation of a forward pass lives in the
 * workspace, addressable by name, so that a backward pass can be added over the same buffers.
 */
#ifndef REIN_MODEL_MODEL_H
#define REIN_MODEL_MODEL_H

#include "kernels/ops.h"
#include "kernels/qmatmul.h"
#include "rein.h"

typedef struct rein_layer {
    float *attn_norm; /* (dim) */
    float *wq;        /* (n_heads * head_dim, dim) */
    float *wk;        /* (n_kv_heads * head_dim, dim) */
    float *wv;        /* (n_kv_heads * head_dim, dim) */
    float *wo;        /* (dim, n_heads * head_dim) */
    float *ffn_norm;  /* (dim) */
    float *w_gate;    /* (ffn_dim, dim) */
    float *w_up;      /* (ffn_dim, dim) */
    float *w_down;    /* (dim, ffn_dim) */
} rein_layer;

/* Scratch for one forward call over n tokens; grown on demand, kept between calls. */
typedef struct rein_workspace {
    int cap;          /* tokens the buffers below hold */
    float *x;         /* (n, dim) residual stream */
    float *xb;        /* (n, dim) normalised input of the current sublayer */
    float *q;         /* (n, n_heads * head_dim) */
    float *k;         /* (n, n_kv_heads * head_dim) */
    float *v;         /* (n, n_kv_heads * head_dim) */
    float *att;       /* (n, n_heads * head_dim) attention output before wo */
    float *gate;      /* (n, ffn_dim), then silu(gate) * up */
    float *up;        /* (n, ffn_dim) */
    int32_t *pos;     /* (n) position of each token in its sequence */
    rein_kv_rows *kvr; /* (n) the cache rows each token attends to in the current layer */
    int32_t *rows;    /* (n) indices of the tokens whose logits are wanted */
    float *rope_cs;   /* (n, rope_dim / 2) cos of each token's rotary angles, for every layer */
    float *rope_sn;   /* (n, rope_dim / 2) sin */
    float *lora_tmp;  /* (n, rank) x @ A^T of an adapter */
    int64_t lora_cap; /* floats lora_tmp holds */
} rein_workspace;

/* The seven linear layers of a block, in the order LoRA targets name them. */
enum { REIN_LIN_Q, REIN_LIN_K, REIN_LIN_V, REIN_LIN_O, REIN_LIN_GATE, REIN_LIN_UP, REIN_LIN_DOWN,
       REIN_LIN_COUNT };

/* One LoRA adapter on a linear layer W (out, in): W x + scale * B (A x). */
typedef struct rein_lora_linear {
    float *A;  /* (rank, in) */
    float *B;  /* (out, rank) */
    float *dA; /* (rank, in) gradient */
    float *dB; /* (out, rank) gradient */
} rein_lora_linear;

typedef struct rein_lora {
    rein_lora_params p;
    float scale;             /* alpha / rank */
    int enabled;
    rein_lora_linear *lin;   /* (n_layers, REIN_LIN_COUNT); A == NULL where not targeted */
    float *arena;            /* every A, B, dA, dB */
    int64_t n_floats;        /* of A and B (the trainable parameters) */
} rein_lora;

/* Forward passes over at most this many tokens (decoding, batched decoding, short prompts) take
 * the decode path: every linear layer through rein_qmatmul_nt, which computes each row the same
 * way whatever else is in the batch, reading the decode view below while it is valid. */
#define REIN_DECODE_ROWS 32

struct rein_model {
    rein_model_config cfg;
    rein_gguf *gguf;
    rein_tokenizer *tok;          /* NULL for a file without tokenizer metadata */
    rein_chat_template *chat;     /* NULL when tok is NULL */
    float *arena;                 /* every weight, f32, 64-byte aligned */
    int64_t n_floats;
    float *tok_embd;              /* (n_vocab, dim) */
    float *out_norm;              /* (dim) */
    float *output;                /* (n_vocab, dim); == tok_embd when the head is tied */
    float *rope_freqs;            /* (rope_dim / 2) frequency divisors, or NULL */
    rein_layer *layers;           /* (n_layers) */
    rein_lora *lora;              /* attached adapters, or NULL */
    rein_workspace ws;
    /* The decode view: each linear weight as the file stores it (pointers into the mapping, or
     * into the arena for F32, and for Q8_0, Q4_1 and F32 a copy repacked for the AVX-512 kernels
     * in dpack), (n_layers * REIN_LIN_COUNT) in layer order, then the output head. The values are
     * those of the arena, so the decode path reads whichever is fewer bytes; once the arena's
     * weights change (rein_model_weights_changed) it reads the arena. */
    rein_qweight *dview;
    void *dpack[2]; /* the repacked copies of the decode view's weights: [0] the
                     * exact mode's (qpack.c), [1] the int8 mode's (qpack_vnni.c), if used */
    int dview_valid;
    int dpack_done[2]; /* each copy is made at the first rein_model_forward in its mode, not at
                        * load, so that a run that only trains never holds them */
};

/* Say that the f32 weights were changed in place (an optimizer step, a LoRA merge, a loaded
 * checkpoint): decoding stops reading the file's blocks and reads the arena from now on. */
void rein_model_weights_changed(rein_model *m);

/* The weight the decode path reads for linear `which` of layer l, or with which ==
 * REIN_LIN_COUNT the output head (l ignored): the file's blocks while the view is valid, else the
 * arena as F32. */
rein_qweight rein_model_decode_weight(const rein_model *m, int l, int which);
/* Make the decode view's repacked copies if they are not made yet (rein_model_forward does). */
rein_status rein_model_decode_prepare(rein_model *m);

/* The weight of linear layer `which` of layer l, with its (out, in) shape. */
float *rein_model_linear_weight(const rein_model *m, int l, int which, int *out_dim, int *in_dim);

/* y (n, out) = x (n, in) @ W^T (+= when accumulate), plus the layer's LoRA adapter when one is
 * attached and enabled. xa (n, rank), when not NULL, receives x @ A^T for the backward pass;
 * scratch (n, rank) is needed when an adapter runs and xa is NULL. */
void rein_linear_forward(const rein_model *m, int l, int which, float *y, const float *x, int n,
                         int accumulate, float *xa, float *scratch);

/* The active adapter of linear `which` in layer l, or NULL. */
const rein_lora_linear *rein_lora_active(const rein_model *m, int l, int which);

struct rein_kv_cache {
    int n_layers, n_seq, n_ctx, n_kv_heads, head_dim;
    rein_type type; /* of the elements: REIN_TYPE_F32 or REIN_TYPE_F16 */
    int elt;        /* bytes an element: 4 or 2 */
    void *k;        /* (n_layers, n_seq, n_kv_heads, n_ctx, head_dim) */
    void *v;        /* (n_layers, n_seq, n_kv_heads, n_ctx, head_dim) */
    int *len;  /* (n_seq) positions filled */
    /* (n_seq) sharing (rein_kv_cache_share): positions < share_len[s] of sequence s are read from
     * sequence share_src[s] (which shares nothing itself), the rest from s's own rows */
    int *share_src, *share_len;
};

/* Address of position `pos` of KV head `head` of sequence `seq` in layer `layer` of a cache
 * tensor. Heads apart: a head's keys are one contiguous run, which attention streams (with the
 * heads of a position side by side, each run was a third of every row and read markedly slower). */
static inline void *rein_kv_at(const rein_kv_cache *kv, void *base, int layer, int seq, int head,
                               int pos) {
    return (char *)base +
           ((((int64_t)layer * kv->n_seq + seq) * kv->n_kv_heads + head) * kv->n_ctx + pos) *
               kv->head_dim * kv->elt;
}

/* Make m->ws hold n tokens (grows, never shrinks), and n x rank for an attached adapter. */
rein_status rein_workspace_reserve(rein_model *m, int n);

#endif
