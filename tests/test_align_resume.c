/* test_align_resume.c - `rein align` end to end on a tiny model, and resuming after kill -9.
 *
 * The tiny test model (tests/fixtures/model/tiny_f32.gguf, written again here with a 4096-token
 * context so that the principle-driven prompt fits) writes nonsense, so the run uses --keep-all
 * (every verdict recorded, every non-empty item kept): the point is the machinery. Checked:
 *  - a run killed with SIGKILL in the middle of stage 2 (after its 5th answer, via the test hook
 *    REIN_TEST_ALIGN_KILL_AFTER) and resumed ends with exactly the answers of a run that was
 *    never interrupted: none lost, none duplicated, each the same text and verdict;
 *  - the rest of the pipeline (engraving, verbose cloning, evaluation, report) runs every stage and
 *    writes the database, the adapters, the JSONL exports and the report;
 *  - an existing run is not overwritten without --resume; a sub-command needs a run;
 *  - `rein selfinstruct` alone.
 */
#include "align/rundb.h"
#include "base/base.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static const char *bin;
static char model[512], common[2048];

/* The tiny model with a 4096-token context (metadata only; the weights are copied as they are). */
static void write_model(void) {
    snprintf(model, sizeof model, "%s/tiny4k.gguf", test_tmpdir());
    rein_gguf *g;
    rein_gguf_writer *w;
    CHECK_OK(rein_gguf_open("tests/fixtures/model/tiny_f32.gguf", &g));
    CHECK_OK(rein_gguf_writer_new(&w));
    CHECK_OK(rein_gguf_copy_kv(w, g));
    CHECK_OK(rein_gguf_set_u32(w, "llama.context_length", 4096));
    for (int64_t i = 0; i < rein_gguf_n_tensors(g); i++) {
        const rein_gguf_tensor *t = rein_gguf_tensor_at(g, i);
        CHECK_OK(rein_gguf_add_tensor_raw(w, t->name, t->type, t->n_dims, t->shape, t->data,
                                          t->n_bytes));
    }
    CHECK_OK(rein_gguf_writer_write(w, model));
    rein_gguf_writer_free(w);
    rein_gguf_free(g);
}

static int align(const char *env, const char *args, rein_buf *out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s align -m %s %s %s", env ? env : "", bin, model, common, args);
    return test_run(cmd, 1, out);
}

static rein_status dump_answer(void *ud, const rein_answer_row *r) {
    return rein_buf_appendf(ud, "%lld|%s|%s|%d|%s|%d\n", (long long)r->prompt, r->raw, r->ending,
                            r->kept, r->reason ? r->reason : "-", r->n_tokens);
}

static rein_status dump_prompt(void *ud, const rein_prompt_row *r) {
    return rein_buf_appendf(ud, "%lld|%s|%s|%d|%s\n", (long long)r->id, r->kind, r->text, r->kept,
                            r->reason ? r->reason : "-");
}

/* Every prompt and every answer of a stage, one line each, in id order. */
static void dump(const char *dir, const char *stage, rein_buf *prompts, rein_buf *answers,
                 int *n_answers) {
    rein_rundb *db;
    rein_buf_clear(prompts);
    rein_buf_clear(answers);
    CHECK_OK(rein_rundb_open(dir, &db));
    if (!db) return;
    CHECK_OK(rein_rundb_prompts(db, NULL, 0, dump_prompt, prompts));
    CHECK_OK(rein_rundb_answers(db, stage, 0, dump_answer, answers));
    *n_answers = 0;
    for (const char *p = answers->data; p && *p; p++) *n_answers += *p == '\n';
    rein_rundb_close(db);
}

/* Whether s is valid UTF-8 (what the database and the JSONL exports must hold, whatever bytes a
 * byte-level model writes). */
static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >= 0xC2 && *p <= 0xDF) ? 2 : (*p >= 0xE0 && *p <= 0xEF) ? 3
                : (*p >= 0xF0 && *p <= 0xF4) ? 4 : 0;
        if (!len) return 0;
        for (int k = 1; k < len; k++)
            if ((p[k] & 0xC0) != 0x80) return 0;
        p += len;
    }
    return 1;
}

static int file_has(const char *dir, const char *name, const char *needle) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    rein_buf b = {0};
    int ok = rein_read_file(p, &b) == REIN_OK && (!needle || (b.data && strstr(b.data, needle)));
    rein_buf_free(&b);
    return ok;
}

int main(void) {
    bin = getenv("REIN_BIN") ? getenv("REIN_BIN") : "build/rein";
    if (access(bin, X_OK) != 0) test_skip("the rein program is not built (make rein)");
    write_model();
    const char *fx = "tests/fixtures/align";
    snprintf(common, sizeof common,
             "--prompts 8 --keep-all --plain --parallel 3 --principles %s/principles.txt "
             "--exemplars %s/exemplars.txt --seeds %s/redteam_types.txt --seed-tasks "
             "%s/seed_tasks.txt --eval-behaviors %s/heldout_redteam.txt --eval-benign "
             "%s/heldout_benign.txt --answer-tokens 24 --clone-tokens 24 --epochs 1 "
             "--batch-tokens 512 --max-len 512 --eval-tokens 8",
             fx, fx, fx, fx, fx, fx);
    char a[512], b[512], args[1024];
    snprintf(a, sizeof a, "%s/straight", test_tmpdir());
    snprintf(b, sizeof b, "%s/killed", test_tmpdir());
    rein_buf out = {0}, pa = {0}, aa = {0}, pb = {0}, ab = {0};

    /* stages 1-2 straight through */
    snprintf(args, sizeof args, "--out %s --stages 1-2", a);
    CHECKF(align(NULL, args, &out) == 0, "%s", out.data);
    int na = 0, nb = 0;
    dump(a, "answer", &pa, &aa, &na);
    CHECKF(na >= 8, "%d answers in the straight run", na);
    CHECK(valid_utf8(pa.data) && valid_utf8(aa.data));

    /* killed after the 5th answer of stage 2, then resumed */
    snprintf(args, sizeof args, "--out %s --stages 1-2", b);
    int rc = align("REIN_TEST_ALIGN_KILL_AFTER=5", args, &out);
    CHECKF(rc == 128 + 9, "expected SIGKILL, got %d: %s", rc, out.data);
    dump(b, "answer", &pb, &ab, &nb);
    CHECKF(nb == 5, "%d answers committed before the kill, expected 5", nb);
    CHECK(!strcmp(pa.data, pb.data)); /* stage 1 was complete and identical */
    snprintf(args, sizeof args, "--out %s --stages 1-2", b);
    CHECK(align(NULL, args, &out) == 1 && strstr(out.data, "already holds a run"));
    snprintf(args, sizeof args, "--out %s --stages 1-2 --resume", b);
    CHECKF(align(NULL, args, &out) == 0, "%s", out.data);
    CHECK(strstr(out.data, "stage prompts is done"));
    dump(b, "answer", &pb, &ab, &nb);
    CHECKF(nb == na, "resumed run has %d answers, the straight one %d", nb, na);
    CHECKF(!strcmp(aa.data, ab.data), "answers differ:\n--- straight\n%s--- killed + resumed\n%s",
           aa.data, ab.data);
    if (nb == na && !strcmp(aa.data, ab.data))
        printf("stage 2 killed (SIGKILL) after 5 of %d answers and resumed: the same %d answers as "
               "an unbroken run, none lost or duplicated\n", na, na);

    /* the rest of the pipeline: engrave, clone, evaluate, report */
    snprintf(args, sizeof args, "--out %s --stages 3-4", a);
    CHECKF(align(NULL, args, &out) == 0, "%s", out.data);
    CHECK(strstr(out.data, "attack success") && strstr(out.data, "report.md"));
    CHECK(file_has(a, "engrave/adapter/adapter_config.json", NULL));
    CHECK(file_has(a, "clone/adapter/adapter_model.safetensors", NULL));
    CHECK(file_has(a, "report.md", "| aligned |") && file_has(a, "report.md", "## Side by side"));
    CHECK(file_has(a, "report.html", "<svg") && file_has(a, "chart.svg", "Wilson"));
    CHECK(file_has(a, "export/engrave.jsonl", "{\"messages\":[{\"role\":\"user\""));
    CHECK(file_has(a, "export/principle_answers.jsonl", "\"completion\":[{\"role\":\"assistant\","
                                                        "\"content\":\"Thoughts:"));
    CHECK(file_has(a, "export/clone.jsonl", "\"messages\""));
    CHECK(file_has(a, "export/prompts.jsonl", "\"kind\":\"redteam\""));
    CHECK(file_has(a, "eval/base/eval.json", "\"attack_success\""));
    CHECK(file_has(a, "eval/aligned/generations.jsonl", "\"refused\""));
    rein_rundb *db;
    CHECK_OK(rein_rundb_open(a, &db));
    const char *stages[] = {"prompts", "answer", "engrave", "clone answers", "clone", "evaluate"};
    for (int i = 0; i < 6 && db; i++) {
        int done = 0;
        CHECK_OK(rein_rundb_stage_done(db, stages[i], &done));
        CHECKF(done, "stage %s not done", stages[i]);
    }
    rein_rundb_close(db);
    /* done stages are skipped; the report is written again */
    snprintf(args, sizeof args, "--out %s --resume", a);
    CHECKF(align(NULL, args, &out) == 0 && strstr(out.data, "stage engrave is done"), "%s", out.data);

    /* sub-commands need a run */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s align answer -m %s --out %s/none", bin, model, test_tmpdir());
    CHECKF(test_run(cmd, 1, &out) == 1 && strstr(out.data, "holds no run"), "%s", out.data);
    CHECK(align(NULL, "--out x --stages 5", &out) == 2 && strstr(out.data, "--stages"));

    /* rein selfinstruct */
    snprintf(cmd, sizeof cmd, "%s selfinstruct -m %s --out %s/si --n 4 --seed-tasks %s/seed_tasks.txt "
             "--plain --parallel 2", bin, model, test_tmpdir(), fx);
    CHECKF(test_run(cmd, 1, &out) == 0, "%s", out.data);
    snprintf(cmd, sizeof cmd, "%s/si", test_tmpdir());
    CHECK(file_has(cmd, "export/prompts.jsonl", NULL) && file_has(cmd, "run.db", NULL));

    rein_buf_free(&out);
    rein_buf_free(&pa);
    rein_buf_free(&aa);
    rein_buf_free(&pb);
    rein_buf_free(&ab);
    return test_finish();
}
