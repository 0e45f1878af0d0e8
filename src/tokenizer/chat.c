/* chat.c - chat templates: turning a conversation into the text a chat model was trained on.
 *
 * A GGUF file carries its chat template as Jinja source (tokenizer.chat_template). rein does not
 * run Jinja: it recognises the few template families it knows from their marker tokens and
 * renders them in C, byte for byte as the Jinja would (tests/test_chat_template.c checks that
 * against jinja2):
 *   chatml   <|im_start|>role\ncontent<|im_end|>\n per message; SmolLM2's and Qwen's variants
 *            insert a default system message when the first message is not a system one, and
 *            its text is read out of the template source, never written here;
 *   llama3   <|begin_of_text|> then <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
 *            with the content trimmed, as Llama 3's template does;
 *   generic  "User: content\n\n" and so on, for templates rein does not recognise.
 */
#include "tokenizer/tokenizer.h"

#include <string.h>

enum { KIND_CHATML, KIND_LLAMA3, KIND_GENERIC };

struct rein_chat_template {
    int kind;
    char *default_system; /* NULL if none */
};

static const char *const KIND_NAMES[] = {"chatml", "llama3", "generic"};

/* Read the constant default system prompt out of a ChatML template: the text of a string literal
 * that starts "<|im_start|>system" + newline and runs to "<|im_end|>", with Jinja's string escapes
 * undone. NULL (and REIN_OK) if there is none, e.g. when the system text comes from a variable. */
static rein_status find_default_system(const char *jinja, char **out) {
    *out = NULL;
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(jinja, head); p; p = strstr(p + 1, head)) {
        char quote = p > jinja ? p[-1] : 0;
        if (quote != '\'' && quote != '"') continue; /* the literal must start here */
        const char *q = p + sizeof(head) - 1;
        if (q[0] == '\n') q += 1;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end) continue;
        rein_buf b = {0};
        int constant = 1;
        for (const char *c = q; c < end && constant; c++) {
            char ch = *c;
            if (ch == quote || (ch == '{' && (c[1] == '{' || c[1] == '%'))) {
                constant = 0; /* the literal ends before <|im_end|>: not a constant text */
                break;
            }
            if (ch == '\\' && c + 1 < end) {
                c++;
                ch = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c == 'r' ? '\r' : *c;
            }
            if (rein_buf_append(&b, &ch, 1) != REIN_OK) {
                rein_buf_free(&b);
                return REIN_ERR_NOMEM;
            }
        }
        if (!constant) {
            rein_buf_free(&b);
            continue;
        }
        *out = b.data ? b.data : rein_strdup(""); /* the buffer's memory is ours now */
        if (!*out) return REIN_ERR_NOMEM;
        return REIN_OK;
    }
    return REIN_OK;
}

rein_status rein_chat_template_new(const char *jinja, const char *name,
                                   rein_chat_template **out) {
    *out = NULL;
    int kind = KIND_GENERIC;
    if (name) {
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(name, KIND_NAMES[i])) k = i;
        if (k < 0)
            return rein_error(REIN_ERR_INVALID,
                              "chat template \"%s\" is not known; use chatml, llama3 or generic", name);
        kind = k;
    } else if (jinja && strstr(jinja, "<|im_start|>")) {
        kind = KIND_CHATML;
    } else if (jinja && strstr(jinja, "<|start_header_id|>") && strstr(jinja, "<|eot_id|>")) {
        kind = KIND_LLAMA3;
    }
    rein_chat_template *ct = rein_calloc(1, sizeof(*ct));
    if (!ct) return REIN_ERR_NOMEM;
    ct->kind = kind;
    if (kind == KIND_CHATML && jinja) {
        rein_status st = find_default_system(jinja, &ct->default_system);
        if (st != REIN_OK) {
            rein_free(ct);
            return st;
        }
    }
    *out = ct;
    return REIN_OK;
}

void rein_chat_template_free(rein_chat_template *ct) {
    if (!ct) return;
    rein_free(ct->default_system);
    rein_free(ct);
}

const char *rein_chat_template_name(const rein_chat_template *ct) { return KIND_NAMES[ct->kind]; }

const char *rein_chat_template_default_system(const rein_chat_template *ct) {
    return ct->default_system;
}

const char *rein_chat_template_end_of_turn(const rein_chat_template *ct) {
    switch (ct->kind) {
    case KIND_CHATML: return "<|im_end|>";
    case KIND_LLAMA3: return "<|eot_id|>";
    default: return "\n\nUser:";
    }
}

/* Python's str.isspace() for the code points Jinja's trim filter strips. */
static int py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Jinja's `| trim`: strip whitespace at both ends. */
static void trim(const char *s, size_t *start, size_t *end) {
    size_t a = 0, b = strlen(s);
    while (a < b) {
        int n;
        uint32_t c = rein_tok_utf8_next(s + a, b - a, &n);
        if (!py_space(c)) break;
        a += (size_t)n;
    }
    while (b > a) {
        size_t k = b - 1; /* back to the start of the last character */
        while (k > a && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
        int n;
        uint32_t c = rein_tok_utf8_next(s + k, b - k, &n);
        if (k + (size_t)n != b || !py_space(c)) break;
        b = k;
    }
    *start = a;
    *end = b;
}

static rein_status put(rein_buf *out, const char *s) { return rein_buf_append(out, s, strlen(s)); }

/* "user" -> "User" for the generic form. */
static rein_status put_title(rein_buf *out, const char *role) {
    if (!role[0]) return REIN_OK;
    char c = role[0] >= 'a' && role[0] <= 'z' ? (char)(role[0] - 'a' + 'A') : role[0];
    REIN_TRY(rein_buf_append(out, &c, 1));
    return put(out, role + 1);
}

rein_status rein_chat_apply(const rein_chat_template *ct, const rein_chat_msg *msgs, size_t n,
                            int add_generation_prompt, rein_buf *out) {
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return rein_error(REIN_ERR_INVALID, "chat message %zu: role or content is NULL", i);
    /* Make sure out->data is a string even when nothing is rendered. */
    REIN_TRY(rein_buf_append(out, "", 0));
    switch (ct->kind) {
    case KIND_CHATML:
        if (n > 0 && ct->default_system && strcmp(msgs[0].role, "system") != 0) {
            REIN_TRY(put(out, "<|im_start|>system\n"));
            REIN_TRY(put(out, ct->default_system));
            REIN_TRY(put(out, "<|im_end|>\n"));
        }
        for (size_t i = 0; i < n; i++) {
            REIN_TRY(put(out, "<|im_start|>"));
            REIN_TRY(put(out, msgs[i].role));
            REIN_TRY(put(out, "\n"));
            REIN_TRY(put(out, msgs[i].content));
            REIN_TRY(put(out, "<|im_end|>\n"));
        }
        if (add_generation_prompt) REIN_TRY(put(out, "<|im_start|>assistant\n"));
        break;
    case KIND_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            size_t a, b;
            trim(msgs[i].content, &a, &b);
            if (i == 0) REIN_TRY(put(out, "<|begin_of_text|>"));
            REIN_TRY(put(out, "<|start_header_id|>"));
            REIN_TRY(put(out, msgs[i].role));
            REIN_TRY(put(out, "<|end_header_id|>\n\n"));
            REIN_TRY(rein_buf_append(out, msgs[i].content + a, b - a));
            REIN_TRY(put(out, "<|eot_id|>"));
        }
        if (add_generation_prompt)
            REIN_TRY(put(out, "<|start_header_id|>assistant<|end_header_id|>\n\n"));
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            REIN_TRY(put_title(out, msgs[i].role));
            REIN_TRY(put(out, ": "));
            REIN_TRY(put(out, msgs[i].content));
            REIN_TRY(put(out, "\n\n"));
        }
        if (add_generation_prompt) REIN_TRY(put(out, "Assistant:"));
        break;
    }
    return REIN_OK;
}
