/* test_model_ref_tiny.c - rein's forward pass against HF transformers on tiny random models.
 *
 * tests/fixtures/model/tiny_<type>.gguf are tiny Llama models (random weights, GQA, some with a
 * tied output head), one per tensor type rein reads: every 2-D weight in that type. Beside each,
 * tiny_<type>.ref holds transformers' fp32 logits over the whole vocabulary at every position of
 * two prompts, and a 16-token greedy continuation (tools/gen_model_fixture.py wrote them all). The
 * checks are those of test_model_ref.c, which this file includes for them; unlike that test, this
 * one needs nothing outside the repository, so it always runs.
 */
#define MODEL_REF_NO_MAIN
#include "test_model_ref.c"

int main(void) {
    static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q6_k"};
    if (!host_is_little_endian()) test_skip("the fixtures are little-endian; this host is not");
    /* Both sides run the same dequantized weights in fp32 through at most 2 layers, with logits of
     * magnitude ~10: 1e-4 leaves room for summation order and nothing else. */
    const tolerances tol = {.logit = 1e-4f, .lse = 1e-4f, .tie = 1e-4f, .self = 1e-4f};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char model[128], fixture[128], name[16];
        snprintf(model, sizeof model, "tests/fixtures/model/tiny_%s.gguf", types[i]);
        snprintf(fixture, sizeof fixture, "tests/fixtures/model/tiny_%s.ref", types[i]);
        snprintf(name, sizeof name, "tiny_%s", types[i]);
        ref_file r;
        if (!ref_read(fixture, &r)) {
            CHECK(0);
            continue;
        }
        check_model(name, model, &r, &tol);
        ref_free(&r);
    }
    return test_finish();
}
