/* test_chat_template.c - chat templates rendered byte for byte as jinja2 renders them.
 *
 * tests/fixtures/tokenizer/chat.json (tools/gen_chat_fixture.py) holds four Jinja templates
 * (SmolLM2's own, plain ChatML, Qwen2's ChatML with a default system prompt, Llama 3's), a set of
 * conversations, and what jinja2 renders for each, with and without the generation prompt. Each
 * template must be recognised, its default system prompt read out of its source, and every
 * rendering must match exactly. Then the generic form, name overrides, and bad input.
 */
#include "base/base.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <string.h>

static const char *FIXTURE = "tests/fixtures/tokenizer/chat.json";

static size_t to_msgs(const cJSON *conv, rein_chat_msg *msgs, size_t max) {
    size_t n = 0;
    for (const cJSON *m = conv ? conv->child : NULL; m && n < max; m = m->next, n++) {
        msgs[n].role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
        msgs[n].content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
    }
    return n;
}

static void check_fixture(void) {
    rein_buf fx = {0};
    CHECK_OK(rein_read_file(FIXTURE, &fx));
    cJSON *root = fx.data ? cJSON_Parse(fx.data) : NULL;
    CHECKF(root != NULL, "%s is not JSON", FIXTURE);
    if (!root) return;
    const cJSON *templates = cJSON_GetObjectItemCaseSensitive(root, "templates");
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(root, "conversations");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    int n_cases = 0, pass = 0;
    for (const cJSON *t = templates ? templates->child : NULL; t; t = t->next) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "id"));
        const char *src = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "source"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
        const char *sys = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "default_system"));
        rein_chat_template *ct = NULL;
        CHECK_OK(rein_chat_template_new(src, NULL, &ct));
        if (!ct) continue;
        CHECKF(!strcmp(rein_chat_template_name(ct), name), "%s: recognised as %s", id,
               rein_chat_template_name(ct));
        const char *got_sys = rein_chat_template_default_system(ct);
        CHECKF(sys ? got_sys && !strcmp(got_sys, sys) : got_sys == NULL,
               "%s: default system \"%s\"", id, got_sys ? got_sys : "(none)");
        for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
            if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "template")), id))
                continue;
            int ci = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "conversation"));
            int gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
            const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "text"));
            rein_chat_msg msgs[16];
            size_t n = to_msgs(cJSON_GetArrayItem(convs, ci), msgs, 16);
            rein_buf out = {0};
            CHECK_OK(rein_chat_apply(ct, msgs, n, gen, &out));
            int ok = out.data && want && !strcmp(out.data, want);
            CHECKF(ok, "%s, conversation %d, generation prompt %d:\n--- got\n%s\n--- want\n%s", id,
                   ci, gen, out.data ? out.data : "(null)", want ? want : "(null)");
            pass += ok;
            n_cases++;
            rein_buf_free(&out);
        }
        rein_chat_template_free(ct);
    }
    printf("chat templates: %d / %d renderings exact\n", pass, n_cases);
    CHECK(n_cases == 64);
    cJSON_Delete(root);
    rein_buf_free(&fx);
}

int main(void) {
    check_fixture();

    /* The default model's template is SmolLM2's ChatML with its default system prompt. */
    const char *model = test_default_model();
    if (model) {
        rein_gguf *g = NULL;
        CHECK_OK(rein_gguf_open(model, &g));
        const char *s = NULL;
        size_t len = 0;
        if (g) CHECK_OK(rein_gguf_get_str(g, "tokenizer.chat_template", &s, &len));
        char *src = s ? strndup(s, len) : NULL;
        rein_chat_template *ct = NULL;
        if (src) CHECK_OK(rein_chat_template_new(src, NULL, &ct));
        if (ct) {
            CHECK(!strcmp(rein_chat_template_name(ct), "chatml"));
            CHECK(!strcmp(rein_chat_template_default_system(ct),
                          "You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
            CHECK(!strcmp(rein_chat_template_end_of_turn(ct), "<|im_end|>"));
        }
        rein_chat_template_free(ct);
        free(src);
        rein_gguf_free(g);
    } else {
        printf("default model absent: its template not read from the GGUF (the fixture has it)\n");
    }

    /* Unrecognised templates fall back to the generic form. */
    rein_chat_template *ct = NULL;
    CHECK_OK(rein_chat_template_new("{{ messages }}", NULL, &ct));
    CHECK(ct && !strcmp(rein_chat_template_name(ct), "generic"));
    rein_chat_msg conv[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}};
    rein_buf out = {0};
    CHECK_OK(rein_chat_apply(ct, conv, 3, 1, &out));
    CHECK(!strcmp(out.data, "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nAssistant:"));
    CHECK(rein_chat_template_default_system(ct) == NULL);
    CHECK(!strcmp(rein_chat_template_end_of_turn(ct), "\n\nUser:"));
    rein_chat_template_free(ct);
    CHECK_OK(rein_chat_template_new(NULL, NULL, &ct)); /* no template at all */
    CHECK(ct && !strcmp(rein_chat_template_name(ct), "generic"));
    rein_chat_template_free(ct);

    /* A name overrides recognition. */
    CHECK_OK(rein_chat_template_new("{{ messages }}", "llama3", &ct));
    CHECK(ct && !strcmp(rein_chat_template_name(ct), "llama3"));
    CHECK(!strcmp(rein_chat_template_end_of_turn(ct), "<|eot_id|>"));
    rein_buf_clear(&out);
    CHECK_OK(rein_chat_apply(ct, conv + 1, 1, 0, &out));
    CHECK(!strcmp(out.data, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"));
    rein_chat_template_free(ct);
    CHECK_OK(rein_chat_template_new("<|start_header_id|><|eot_id|>", "chatml", &ct));
    CHECK(ct && !strcmp(rein_chat_template_name(ct), "chatml") &&
          rein_chat_template_default_system(ct) == NULL);
    rein_buf_clear(&out);
    CHECK_OK(rein_chat_apply(ct, conv + 1, 1, 1, &out));
    CHECK(!strcmp(out.data, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    rein_chat_template_free(ct);
    CHECK_OK(rein_chat_template_new(NULL, "generic", &ct));
    CHECK(ct && !strcmp(rein_chat_template_name(ct), "generic"));
    rein_chat_template_free(ct);

    /* A system prompt that comes from a variable is no default; an escaped quote is text. */
    CHECK_OK(rein_chat_template_new("{{ '<|im_start|>system\\n' + message['content'] + '<|im_end|>' }}",
                                    NULL, &ct));
    CHECK(ct && rein_chat_template_default_system(ct) == NULL);
    rein_chat_template_free(ct);
    CHECK_OK(rein_chat_template_new("{{ '<|im_start|>system\\nYou\\'re \"kind\".<|im_end|>\\n' }}",
                                    NULL, &ct));
    CHECK(ct && rein_chat_template_default_system(ct) &&
          !strcmp(rein_chat_template_default_system(ct), "You're \"kind\"."));
    rein_chat_template_free(ct);

    /* Bad input. */
    ct = NULL;
    CHECK_ERR(rein_chat_template_new(NULL, "alpaca", &ct), REIN_ERR_INVALID, "alpaca");
    CHECK(ct == NULL);
    CHECK_OK(rein_chat_template_new(NULL, "chatml", &ct));
    rein_chat_msg bad[] = {{"user", NULL}};
    CHECK_ERR(rein_chat_apply(ct, bad, 1, 0, &out), REIN_ERR_INVALID, "message 0");
    rein_buf_clear(&out);
    CHECK_OK(rein_chat_apply(ct, NULL, 0, 0, &out));
    CHECK(out.data && out.len == 0);
    rein_chat_template_free(ct);
    rein_chat_template_free(NULL);
    rein_buf_free(&out);
    return test_finish();
}
