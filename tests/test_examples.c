/* test_examples.c - dataset records into token sequences and loss masks.
 *
 * The check throughout: detokenize each run of learned tokens and compare it with the text that
 * should be learned (an assistant turn's content + the end-of-turn text, a completion, a response),
 * and detokenize everything and compare it with the rendered conversation. Runs on the tiny
 * byte-level vocabulary of tests/fixtures/model/tiny_f32.gguf (ChatML template; no download), on
 * a copy of it that asks for BOS, and on the default model's tokenizer when it is present.
 */
#include "base/base.h"
#include "formats/dataset.h"
#include "testutil.h"
#include "train/examples.h"

#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/data/"
#define TINY "tests/fixtures/model/tiny_f32.gguf"

typedef struct vocab {
    rein_gguf *g;
    rein_tokenizer *tok;
    rein_chat_template *ct; /* from tokenizer.chat_template */
} vocab;

static int vocab_load(const char *path, vocab *v) {
    memset(v, 0, sizeof *v);
    const char *s;
    size_t len;
    rein_status st = rein_gguf_open(path, &v->g);
    if (st == REIN_OK) st = rein_tokenizer_from_gguf(v->g, &v->tok);
    if (st == REIN_OK) st = rein_gguf_get_str(v->g, "tokenizer.chat_template", &s, &len);
    if (st == REIN_OK) {
        char *jinja = malloc(len + 1);
        memcpy(jinja, s, len);
        jinja[len] = 0;
        st = rein_chat_template_new(jinja, NULL, &v->ct);
        free(jinja);
    }
    CHECKF(st == REIN_OK, "%s: %s", path, rein_last_error());
    return st == REIN_OK;
}

static void vocab_free(vocab *v) {
    rein_chat_template_free(v->ct);
    rein_tokenizer_free(v->tok);
    rein_gguf_free(v->g);
}

/* The runs of learned tokens, each detokenized (control tokens as text), joined with "|". */
static char *learned_text(const rein_tokenizer *tok, const rein_example *e) {
    rein_buf b = {0};
    rein_buf_append(&b, "", 0);
    for (size_t i = 0; i < e->n;) {
        if (!e->mask[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < e->n && e->mask[j])
            j++;
        if (b.len) rein_buf_append(&b, "|", 1);
        rein_detokenize(tok, e->tokens + i, j - i, 1, &b);
        i = j;
    }
    return b.data;
}

static char *all_text(const rein_tokenizer *tok, const rein_example *e) {
    rein_buf b = {0};
    rein_buf_append(&b, "", 0);
    rein_detokenize(tok, e->tokens, e->n, 1, &b);
    return b.data;
}

static void check_learned(const rein_tokenizer *tok, const rein_example *e, const char *want,
                          int line) {
    char *got = learned_text(tok, e);
    test_checks++;
    if (strcmp(got, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: learned text\n  got:  \"%s\"\n  want: \"%s\"\n", __FILE__, line,
                got, want);
    }
    rein_free(got);
    CHECKF(e->n > 0 && e->mask[0] == 0, "line %d: mask[0] must be 0", line);
}
#define CHECK_LEARNED(tok, e, want) check_learned((tok), (e), (want), __LINE__)

static void check_all(const rein_tokenizer *tok, const rein_example *e, const char *want,
                      int line) {
    char *got = all_text(tok, e);
    test_checks++;
    if (strcmp(got, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: whole text\n  got:  \"%s\"\n  want: \"%s\"\n", __FILE__, line, got,
                want);
    }
    rein_free(got);
}
#define CHECK_ALL(tok, e, want) check_all((tok), (e), (want), __LINE__)

static rein_msg_list list_of(const rein_msg *m, size_t n) {
    rein_msg_list l = {m, n};
    return l;
}

/* ---- the tiny vocabulary, ChatML ------------------------------------------------------------ */

static const rein_msg CONV[] = {
    {REIN_ROLE_SYSTEM, "Be brief."}, {REIN_ROLE_USER, "Hi there"}, {REIN_ROLE_ASSISTANT, "Hello!"},
    {REIN_ROLE_USER, "2+2?"},        {REIN_ROLE_ASSISTANT, "4"},
};

static void test_messages(const vocab *v) {
    rein_example_params p = rein_example_default_params();
    p.tok = v->tok;
    p.tmpl = v->ct;
    rein_sft_record r = {0};
    r.kind = REIN_SFT_MESSAGES;
    r.messages = list_of(CONV, 5);
    r.line = 7;
    rein_example e;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK(e.line == 7 && e.rank == 0);
    /* the content and <|im_end|>; ChatML's "\n" after it is context, not learned */
    CHECK_LEARNED(v->tok, &e, "Hello!<|im_end|>|4<|im_end|>");
    CHECK_ALL(v->tok, &e,
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
              "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
              "<|im_start|>assistant\n4<|im_end|>\n");
    /* the control tokens are single tokens (PARSE_SPECIAL), one learned <|im_end|> per turn */
    int32_t im_end = rein_token_lookup(v->tok, "<|im_end|>");
    size_t n_end = 0, n_end_learned = 0;
    for (size_t i = 0; i < e.n; i++)
        if (e.tokens[i] == im_end) n_end++, n_end_learned += e.mask[i];
    CHECK(n_end == 5 && n_end_learned == 2);
    CHECK(e.tokens[e.n - 1] != im_end && e.mask[e.n - 1] == 0); /* the final "\n" */
    rein_example_free(&e);

    /* train_on_prompt: everything after the first token */
    p.train_on_prompt = 1;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    size_t n_learned = 0;
    for (size_t i = 0; i < e.n; i++)
        n_learned += e.mask[i];
    CHECK(e.mask[0] == 0 && n_learned == e.n - 1);
    rein_example_free(&e);
    p.train_on_prompt = 0;

    /* conversational prompt / completion: only the completion's assistant turns */
    rein_sft_record c = {0};
    c.kind = REIN_SFT_CONV_COMPLETION;
    c.prompt_msgs = list_of(CONV, 4);
    c.completion_msgs = list_of(CONV + 4, 1);
    CHECK_OK(rein_example_sft(&p, &c, &e));
    CHECK_LEARNED(v->tok, &e, "4<|im_end|>");
    rein_example_free(&e);

    /* a trailing user turn is context */
    rein_msg tail[] = {{REIN_ROLE_USER, "a"}, {REIN_ROLE_ASSISTANT, "b"}, {REIN_ROLE_USER, "c"}};
    r.messages = list_of(tail, 3);
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK_LEARNED(v->tok, &e, "b<|im_end|>");
    CHECK_ALL(v->tok, &e,
              "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
              "<|im_start|>user\nc<|im_end|>\n");
    rein_example_free(&e);

    /* no template for a conversation: a usage error */
    p.tmpl = NULL;
    CHECK_ERR(rein_example_sft(&p, &c, &e), REIN_ERR_INVALID, "needs a chat template");
}

static void test_plain(const vocab *v) {
    rein_example_params p = rein_example_default_params();
    p.tok = v->tok;
    rein_sft_record r = {0};
    r.kind = REIN_SFT_PROMPT_COMPLETION;
    r.prompt = "The capital of France is";
    r.completion = " Paris.";
    rein_example e;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    /* tokens: prompt's, then completion's, then EOS (tiny: <|endoftext|>) */
    rein_tokens a = {0}, b = {0};
    CHECK_OK(rein_tokenize(v->tok, r.prompt, strlen(r.prompt), REIN_TOKENIZE_ADD_BOS, &a));
    CHECK_OK(rein_tokenize(v->tok, r.completion, strlen(r.completion), 0, &b));
    int32_t eos = rein_token_eos(v->tok);
    CHECK(eos >= 0 && e.n == a.n + b.n + 1);
    if (e.n == a.n + b.n + 1) {
        CHECK(!memcmp(e.tokens, a.ids, a.n * 4) && !memcmp(e.tokens + a.n, b.ids, b.n * 4));
        CHECK(e.tokens[e.n - 1] == eos);
        for (size_t i = 0; i < e.n; i++)
            CHECK(e.mask[i] == (i >= a.n));
    }
    CHECK_LEARNED(v->tok, &e, " Paris.<|endoftext|>");
    rein_example_free(&e);
    /* without EOS */
    p.add_eos = 0;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK(e.n == a.n + b.n);
    CHECK_LEARNED(v->tok, &e, " Paris.");
    rein_example_free(&e);
    /* plain text is literal: a control token's text stays bytes */
    r.completion = " <|im_end|>";
    CHECK_OK(rein_example_sft(&p, &r, &e));
    int32_t im_end = rein_token_lookup(v->tok, "<|im_end|>");
    for (size_t i = 0; i < e.n; i++)
        CHECK(e.tokens[i] != im_end);
    CHECK_LEARNED(v->tok, &e, " <|im_end|>");
    rein_example_free(&e);
    p.add_eos = 1;

    /* text: every token after the first */
    rein_sft_record t = {0};
    t.kind = REIN_SFT_TEXT;
    t.text = "Once upon a time";
    CHECK_OK(rein_example_sft(&p, &t, &e));
    CHECK(e.mask[0] == 0);
    for (size_t i = 1; i < e.n; i++)
        CHECK(e.mask[i] == 1);
    CHECK_ALL(v->tok, &e, "Once upon a time<|endoftext|>");
    rein_example_free(&e);
    /* a one-token text with no EOS has nothing to learn */
    p.add_eos = 0;
    t.text = "a";
    CHECK_ERR(rein_example_sft(&p, &t, &e), REIN_ERR_FORMAT, "no token to learn");
    rein_tokens_free(&a);
    rein_tokens_free(&b);
}

static void test_pref(const vocab *v) {
    rein_example_params p = rein_example_default_params();
    p.tok = v->tok;
    p.tmpl = v->ct;
    rein_msg prompt[] = {{REIN_ROLE_USER, "Hi"}};
    rein_msg ch[] = {{REIN_ROLE_ASSISTANT, "Hello!"}};
    rein_msg rj[] = {{REIN_ROLE_ASSISTANT, "Go away."}};
    rein_pref_record r = {0};
    r.conversational = 1;
    r.prompt = list_of(prompt, 1);
    r.chosen = list_of(ch, 1);
    r.rejected = list_of(rj, 1);
    r.line = 4;
    rein_example c, j;
    CHECK_OK(rein_example_pref(&p, &r, &c, &j));
    CHECK(c.rank == 0 && j.rank == 1 && c.line == 4 && j.line == 4);
    CHECK_LEARNED(v->tok, &c, "Hello!<|im_end|>");
    CHECK_LEARNED(v->tok, &j, "Go away.<|im_end|>");
    /* both start with the same prompt tokens, the generation prompt included */
    size_t pc = 0, pj = 0;
    while (!c.mask[pc])
        pc++;
    while (!j.mask[pj])
        pj++;
    CHECK(pc == pj && !memcmp(c.tokens, j.tokens, pc * 4));
    rein_buf pre = {0};
    rein_detokenize(v->tok, c.tokens, pc, 1, &pre);
    CHECK(pre.data && !strcmp(pre.data, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    rein_buf_free(&pre);
    rein_example_free(&c);
    rein_example_free(&j);

    /* strings: prompt + response, the response and EOS learned */
    rein_pref_record s = {0};
    s.prompt_text = "Q: 1+1?\nA:";
    s.chosen_text = " 2";
    s.rejected_text = " 3";
    CHECK_OK(rein_example_pref(&p, &s, &c, &j));
    CHECK_LEARNED(v->tok, &c, " 2<|endoftext|>");
    CHECK_LEARNED(v->tok, &j, " 3<|endoftext|>");
    rein_example_free(&c);
    rein_example_free(&j);
}

/* Other templates on the same vocabulary: Llama 3 (content trimmed; <|eot_id|> closes a turn)
 * and the generic fallback (no end-of-turn token: the whole rendered turn is learned). */
static void test_templates(const vocab *v) {
    rein_example_params p = rein_example_default_params();
    p.tok = v->tok;
    rein_msg m[] = {{REIN_ROLE_USER, "Hi"}, {REIN_ROLE_ASSISTANT, " Hello! "}};
    rein_sft_record r = {0};
    r.kind = REIN_SFT_MESSAGES;
    r.messages = list_of(m, 2);
    rein_example e;

    rein_chat_template *ct = NULL;
    CHECK_OK(rein_chat_template_new(NULL, "llama3", &ct));
    p.tmpl = ct;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK_LEARNED(v->tok, &e, "Hello!<|eot_id|>");
    CHECK_ALL(v->tok, &e,
              "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>");
    rein_example_free(&e);
    rein_chat_template_free(ct);

    CHECK_OK(rein_chat_template_new(NULL, "generic", &ct));
    p.tmpl = ct;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK_LEARNED(v->tok, &e, "  Hello! \n\n");
    rein_example_free(&e);
    rein_chat_template_free(ct);

    /* A template that breaks the prefix property: ChatML with a default system prompt inserts it
     * only when there is a first message, so a conversation that opens with the assistant renders
     * differently up to and through that turn. An error, never a wrong mask. */
    CHECK_OK(rein_chat_template_new("{{ '<|im_start|>system\\nYou are a fox.<|im_end|>\\n' }}"
                                    "<|im_start|>",
                                    NULL, &ct));
    CHECK(rein_chat_template_default_system(ct) != NULL);
    p.tmpl = ct;
    rein_msg first[] = {{REIN_ROLE_ASSISTANT, "I speak first."}};
    r.messages = list_of(first, 1);
    CHECK_ERR(rein_example_sft(&p, &r, &e), REIN_ERR_FORMAT, "does not render turn by turn");
    /* with a user turn first it works, and the default system prompt is context */
    r.messages = list_of(m, 2);
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK_LEARNED(v->tok, &e, " Hello! <|im_end|>");
    rein_example_free(&e);
    rein_chat_template_free(ct);
}

/* Whole datasets: the fixtures of test_dataset, max_len, skip_bad. */
static void test_build(const vocab *v) {
    rein_example_params p = rein_example_default_params();
    p.tok = v->tok;
    p.tmpl = v->ct;
    rein_dataset *ds = NULL;
    rein_example_set *set = NULL;
    rein_buf problems = {0};

    CHECK_OK(rein_dataset_read(FIX "sft.jsonl", NULL, &ds, NULL));
    if (!ds) return;
    CHECK_OK(rein_examples_build(ds, &p, &set, &problems));
    size_t shortest = 0;
    if (set) {
        CHECK(set->n == 5 && set->n_skipped == 0);
        shortest = set->ex[0].n;
        for (size_t i = 0; i < set->n; i++)
            shortest = REIN_MIN(shortest, set->ex[i].n);
        CHECK(shortest < set->ex[0].n && shortest < set->ex[4].n);
        for (size_t i = 0; i < set->n; i++)
            CHECK(set->ex[i].record == i);
        CHECK(set->ex[1].line == 3 && set->ex[4].line == 7);
        CHECK_LEARNED(v->tok, &set->ex[0], "Hello!<|im_end|>|4<|im_end|>");
        CHECK_LEARNED(v->tok, &set->ex[1], " Paris.<|endoftext|>");
        CHECK_LEARNED(v->tok, &set->ex[2], "Blue.<|im_end|>");
        CHECK_LEARNED(v->tok, &set->ex[4], "\xc2\xabh\xc3\xa9\xc2\xbb \xe2\x9c\x93<|im_end|>");
    }
    rein_example_set_free(set);

    /* over-long examples: an error naming file and line, nothing truncated */
    p.max_len = shortest;
    char want[64];
    snprintf(want, sizeof want, "more than max_len %zu (", shortest);
    CHECK_ERR(rein_examples_build(ds, &p, &set, &problems), REIN_ERR_RANGE,
              "sft.jsonl:1: the example has");
    CHECK(!set && strstr(rein_last_error(), want));
    CHECK(problems.data && strstr(problems.data, "sft.jsonl:7: the example has"));
    /* skip_bad: the short ones kept, the others counted */
    p.skip_bad = 1;
    CHECK_OK(rein_examples_build(ds, &p, &set, NULL));
    if (set) {
        CHECK(set->n + set->n_skipped == 5 && set->n_skipped >= 2 && set->n >= 1);
        for (size_t i = 0; i < set->n; i++)
            CHECK(set->ex[i].n <= shortest);
    }
    rein_example_set_free(set);
    p.max_len = 1;
    CHECK_ERR(rein_examples_build(ds, &p, &set, NULL), REIN_ERR_FORMAT, "no examples");
    p.max_len = 0;
    p.skip_bad = 0;
    rein_dataset_free(ds);

    /* preference: chosen then rejected per record */
    CHECK_OK(rein_dataset_read(FIX "pref.jsonl", NULL, &ds, NULL));
    CHECK_OK(rein_examples_build(ds, &p, &set, NULL));
    if (set) {
        CHECK(set->n == 10);
        for (size_t i = 0; i < set->n; i++)
            CHECK(set->ex[i].record == i / 2 && set->ex[i].rank == (int32_t)(i % 2));
        CHECK_LEARNED(v->tok, &set->ex[6], "To get away.<|im_end|>");
        CHECK_LEARNED(v->tok, &set->ex[7], "No.<|im_end|>");
        CHECK_LEARNED(v->tok, &set->ex[9], " Hello, foe.<|endoftext|>");
    }
    rein_example_set_free(set);
    rein_dataset_free(ds);

    /* HH: the silent chosen answer of line 2 still learns to end the turn */
    CHECK_OK(rein_dataset_read(FIX "hh.jsonl", NULL, &ds, NULL));
    CHECK_OK(rein_examples_build(ds, &p, &set, NULL));
    if (set) {
        CHECK(set->n == 6);
        CHECK_LEARNED(v->tok, &set->ex[0], "Call a locksmith.<|im_end|>");
        CHECK_LEARNED(v->tok, &set->ex[2], "<|im_end|>");
        CHECK_LEARNED(v->tok, &set->ex[4], "Yes.\n\n It is safe.<|im_end|>");
    }
    rein_example_set_free(set);
    rein_dataset_free(ds);

    /* ranking: K examples per record, ranks as read */
    CHECK_OK(rein_dataset_read(FIX "ranking.jsonl", NULL, &ds, NULL));
    CHECK_OK(rein_examples_build(ds, &p, &set, NULL));
    if (set) {
        CHECK(set->n == 7);
        static const int32_t ranks[] = {1, 2, 0, 1, 0, 1, 2};
        for (size_t i = 0; i < set->n && i < 7; i++) {
            CHECK(set->ex[i].rank == ranks[i]);
            CHECK(set->ex[i].record == (i < 4 ? 0u : 1u));
        }
        CHECK_LEARNED(v->tok, &set->ex[3], " Fig<|endoftext|>");
        CHECK_LEARNED(v->tok, &set->ex[5], "Hey.<|im_end|>");
    }
    rein_example_set_free(set);
    rein_dataset_free(ds);
    rein_buf_free(&problems);
}

/* A vocabulary that asks for BOS: a copy of the tiny one with add_bos_token = true and BOS =
 * <|im_start|>, so that ChatML text already starts with BOS's text (no second BOS then). */
static void test_bos(const vocab *tiny) {
    char path[256];
    snprintf(path, sizeof path, "%s/bos.gguf", test_tmpdir());
    rein_gguf_writer *w = NULL;
    int32_t im_start = rein_token_lookup(tiny->tok, "<|im_start|>");
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_copy_kv(w, tiny->g));
    CHECK_OK(rein_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1));
    CHECK_OK(rein_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)im_start));
    CHECK_OK(rein_gguf_writer_write(w, path));
    rein_gguf_writer_free(w);
    vocab v;
    if (!vocab_load(path, &v)) return;
    rein_example_params p = rein_example_default_params();
    p.tok = v.tok;
    p.tmpl = v.ct;
    rein_example e;
    rein_sft_record t = {0};
    t.kind = REIN_SFT_TEXT;
    t.text = "Once upon a time";
    CHECK_OK(rein_example_sft(&p, &t, &e));
    CHECK(e.n > 2 && e.tokens[0] == im_start && e.mask[0] == 0);
    for (size_t i = 1; i < e.n; i++)
        CHECK(e.mask[i] == 1);
    rein_example_free(&e);
    rein_sft_record c = {0};
    c.kind = REIN_SFT_PROMPT_COMPLETION;
    c.prompt = "";
    c.completion = "Hi";
    CHECK_OK(rein_example_sft(&p, &c, &e));
    CHECK(e.tokens[0] == im_start && e.mask[0] == 0 && e.mask[1] == 1);
    rein_example_free(&e);
    rein_sft_record r = {0};
    r.kind = REIN_SFT_MESSAGES;
    r.messages = list_of(CONV + 1, 2);
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK(e.tokens[0] == im_start && e.tokens[1] != im_start);
    CHECK_LEARNED(v.tok, &e, "Hello!<|im_end|>");
    rein_example_free(&e);
    vocab_free(&v);
}

/* Allocation failures: every one reported as REIN_ERR_NOMEM, nothing leaked. */
static void test_alloc_failures(const vocab *v) {
    rein_dataset *ds = NULL;
    CHECK_OK(rein_dataset_read(FIX "pref.jsonl", NULL, &ds, NULL));
    if (!ds) return;
    rein_example_params p = rein_example_default_params();
    p.tok = v->tok;
    p.tmpl = v->ct;
    int n_nomem = 0, n_other = 0;
    long k;
    for (k = 0; k < 100000; k++) {
        test_alloc_install(k + 1);
        rein_example_set *set = NULL;
        rein_buf problems = {0};
        rein_status st = rein_examples_build(ds, &p, &set, &problems);
        rein_example_set_free(set);
        rein_buf_free(&problems);
        long live = test_alloc_live();
        test_alloc_uninstall();
        if (live) {
            CHECKF(0, "failing allocation %ld: %ld blocks leaked", k, live);
            break;
        }
        if (st == REIN_OK) break;
        if (st == REIN_ERR_NOMEM)
            n_nomem++;
        else
            n_other++;
    }
    printf("allocation failures: %d points, each REIN_ERR_NOMEM, no leak\n", n_nomem);
    CHECKF(n_other == 0 && n_nomem > 10, "%d NOMEM, %d others over %ld allocations", n_nomem,
           n_other, k);
    rein_dataset_free(ds);
}

/* ---- the default model's tokenizer and template --------------------------------------------- */

static void test_default_model_template(void) {
    const char *path = test_default_model();
    if (!path) {
        printf("SKIP: default model tests: %s is absent (make model)\n",
               "models/SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    }
    vocab v;
    if (!vocab_load(path, &v)) return;
    CHECK(!strcmp(rein_chat_template_name(v.ct), "chatml"));
    const char *sys = rein_chat_template_default_system(v.ct);
    CHECK(sys && strstr(sys, "SmolLM"));
    rein_msg m[] = {
        {REIN_ROLE_USER, "What is the capital of France?"},
        {REIN_ROLE_ASSISTANT, "The capital of France is Paris."},
        {REIN_ROLE_USER, "And of Italy?"},
        {REIN_ROLE_ASSISTANT, "Rome, since 1871."},
    };
    rein_example_params p = rein_example_default_params();
    p.tok = v.tok;
    p.tmpl = v.ct;
    rein_sft_record r = {0};
    r.kind = REIN_SFT_MESSAGES;
    r.messages = list_of(m, 4);
    rein_example e;
    CHECK_OK(rein_example_sft(&p, &r, &e));
    CHECK_LEARNED(v.tok, &e,
                  "The capital of France is Paris.<|im_end|>|Rome, since 1871.<|im_end|>");
    /* the whole sequence is what the template renders (default system prompt included), and for
     * this conversation segment-by-segment tokenisation equals tokenising it whole */
    rein_chat_msg cm[4];
    for (int i = 0; i < 4; i++)
        cm[i].role = rein_role_name(m[i].role), cm[i].content = m[i].content;
    rein_buf full = {0};
    CHECK_OK(rein_chat_apply(v.ct, cm, 4, 0, &full));
    CHECK_ALL(v.tok, &e, full.data);
    rein_tokens whole = {0};
    CHECK_OK(rein_tokenize(v.tok, full.data, full.len, REIN_TOKENIZE_PARSE_SPECIAL, &whole));
    CHECK(whole.n == e.n && !memcmp(whole.ids, e.tokens, e.n * 4));
    /* <|im_end|> is EOS in this vocabulary: the learned end of each turn is the stop token */
    size_t n_eog_learned = 0;
    for (size_t i = 0; i < e.n; i++)
        n_eog_learned += e.mask[i] && rein_token_is_eog(v.tok, e.tokens[i]);
    CHECK(n_eog_learned == 2);
    rein_tokens_free(&whole);
    rein_buf_free(&full);
    rein_example_free(&e);

    /* HH through the real template */
    rein_dataset *ds = NULL;
    rein_example_set *set = NULL;
    CHECK_OK(rein_dataset_read(FIX "hh.jsonl", NULL, &ds, NULL));
    if (ds) CHECK_OK(rein_examples_build(ds, &p, &set, NULL));
    if (set) {
        CHECK_LEARNED(v.tok, &set->ex[1], "Use a bobby pin.<|im_end|>");
        char *all = all_text(v.tok, &set->ex[1]);
        CHECK(strstr(all, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM") ==
              all);
        rein_free(all);
    }
    rein_example_set_free(set);
    rein_dataset_free(ds);

    /* the real HH training file: every pair builds, chosen and rejected share their prompt tokens
     * and each learned part ends with <|im_end|> */
    const char *dir = test_shared_data();
    if (!dir) {
        printf("SKIP: real HH examples: ../shared/data is absent\n");
    } else {
        char hh[512];
        snprintf(hh, sizeof hh, "%s/hh-rlhf-harmless/train.jsonl", dir);
        set = NULL;
        CHECK_OK(rein_dataset_read(hh, NULL, &ds, NULL));
        if (ds) CHECK_OK(rein_examples_build(ds, &p, &set, NULL));
        size_t bad = 0, n_tok = 0;
        int32_t im_end = rein_token_lookup(v.tok, "<|im_end|>");
        for (size_t i = 0; set && i + 1 < set->n; i += 2) {
            const rein_example *c = &set->ex[i], *j = &set->ex[i + 1];
            size_t pc = 0, pj = 0, lc = 0, lj = 0;
            while (pc < c->n && !c->mask[pc])
                pc++;
            while (pj < j->n && !j->mask[pj])
                pj++;
            for (size_t k = 0; k < c->n; k++)
                lc = c->mask[k] ? k : lc;
            for (size_t k = 0; k < j->n; k++)
                lj = j->mask[k] ? k : lj;
            bad += !(pc == pj && !memcmp(c->tokens, j->tokens, pc * 4) && c->tokens[lc] == im_end &&
                     j->tokens[lj] == im_end);
            n_tok += c->n + j->n;
        }
        CHECKF(set && set->n == 3000 && bad == 0, "%zu of %zu pairs wrong", bad,
               set ? set->n / 2 : 0);
        printf("real HH train: %zu examples, %zu tokens, prompts shared, responses end with "
               "<|im_end|>\n",
               set ? set->n : 0, n_tok);
        rein_example_set_free(set);
        rein_dataset_free(ds);
    }
    vocab_free(&v);
    printf("default model: masks match the assistant turns + <|im_end|> under its template\n");
}

int main(void) {
    vocab tiny;
    if (!vocab_load(TINY, &tiny)) return test_finish();
    CHECK(!strcmp(rein_chat_template_name(tiny.ct), "chatml"));
    test_messages(&tiny);
    test_plain(&tiny);
    test_pref(&tiny);
    test_templates(&tiny);
    test_build(&tiny);
    test_bos(&tiny);
    test_alloc_failures(&tiny);
    vocab_free(&tiny);
    test_default_model_template();
    return test_finish();
}
