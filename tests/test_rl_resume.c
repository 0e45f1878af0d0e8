/* test_rl_resume.c - `rein ppo` and `rein grpo` end to end on the tiny model: exact resume after
 * kill -9 in the middle of an iteration's rollout (after sampling, before scoring) and after an
 * iteration, the KL alarm (lower and stop), a non-finite update skipped and counted, refusals (an
 * existing run without --resume, other settings, bad prompt lines).
 *
 * "Exact" means every metrics line of every iteration, everything but the wall-clock times, is the
 * same string in a run that went straight through and in one that was killed and resumed.
 */
#include "base/base.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static const char *bin;
static const char *model = "tests/fixtures/model/tiny_f32.gguf";
static char prompts[256];

static int run(const char *env, const char *cmd, const char *args, rein_buf *out) {
    char line[4096];
    snprintf(line, sizeof line, "%s %s %s -m %s --prompts %s --plain --lora-rank 4 %s",
             env ? env : "", bin, cmd, model, prompts, args);
    return test_run(line, 1, out);
}

/* The metrics line of each iteration without its "time" object (the last line of an iteration
 * wins: a resumed run repeats the iterations after its checkpoint). */
static int lines(const char *dir, char out[][1024], int max) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    rein_buf b = {0};
    if (rein_read_file(path, &b) != REIN_OK) return 0;
    int n = 0;
    for (char *l = strtok(b.data, "\n"); l; l = strtok(NULL, "\n")) {
        int step;
        if (sscanf(l, "{\"step\":%d", &step) != 1 || step < 1 || step > max ||
            !strstr(l, "\"reward\":"))
            continue;
        char *t = strstr(l, ",\"time\":");
        if (t) *t = 0;
        snprintf(out[step - 1], 1024, "%s", l);
        if (step > n) n = step;
    }
    rein_buf_free(&b);
    return n;
}

static int same_metrics(const char *a, const char *b, int iters) {
    static char la[32][1024], lb[32][1024];
    memset(la, 0, sizeof la);
    memset(lb, 0, sizeof lb);
    int na = lines(a, la, 32), nb = lines(b, lb, 32);
    CHECKF(na == iters && nb == iters, "%s has %d iterations, %s has %d, expected %d", a, na, b,
           nb, iters);
    int same = 1;
    for (int i = 0; i < iters; i++)
        if (strcmp(la[i], lb[i])) {
            fprintf(stderr, "iteration %d:\n  %s\n  %s\n", i + 1, la[i], lb[i]);
            same = 0;
        }
    return same;
}

static void resume_case(const char *cmd, const char *name, const char *opts, const char *kill_env,
                        int from) {
    char a[256], b[256], args[1024], want[64];
    rein_buf out = {0};
    snprintf(a, sizeof a, "%s/straight-%s", test_tmpdir(), name);
    snprintf(b, sizeof b, "%s/killed-%s", test_tmpdir(), name);
    snprintf(args, sizeof args, "--out %s %s", a, opts);
    CHECKF(run(NULL, cmd, args, &out) == 0, "%s", out.data);
    snprintf(args, sizeof args, "--out %s %s", b, opts);
    int rc = run(kill_env, cmd, args, &out);
    CHECKF(rc == 128 + 9, "%s: expected SIGKILL, got %d: %s", kill_env, rc, out.data);
    snprintf(args, sizeof args, "--out %s %s --resume", b, opts);
    CHECKF(run(NULL, cmd, args, &out) == 0, "%s", out.data);
    snprintf(want, sizeof want, "from iteration %d", from);
    CHECKF(strstr(out.data, want) != NULL, "expected '%s': %s", want, out.data);
    int ok = same_metrics(a, b, 10);
    CHECKF(ok, "%s %s: straight vs %s + resume differ", cmd, name, kill_env);
    if (ok)
        printf("%s %s: 10 iterations straight == %s + resume from %d (metrics identical)\n", cmd,
               name, kill_env, from);
    rein_buf_free(&out);
}

static void write_prompts(void) {
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", test_tmpdir());
    FILE *f = fopen(prompts, "w");
    for (int i = 0; i < 12; i++)
        fprintf(f, "{\"prompt\":\"what is %d + %d\",\"answer\":%d}\n", i, i + 1, 2 * i + 1);
    fputs("{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
          "{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n", f);
    fclose(f);
}

int main(void) {
    bin = getenv("REIN_BIN") ? getenv("REIN_BIN") : "build/rein";
    if (access(bin, X_OK) != 0) test_skip("the rein program is not built (make rein)");
    write_prompts();
    const char *ppo = "--reward length:6 --reward regex:a --weight 0.5 --iterations 10 --batch 4 "
                      "--max-tokens 12 --save-every 3 --lr 2e-2 --minibatches 2 --epochs 2 "
                      "--kl-target 0.5 --kl-horizon 100 --no-eos-penalty -0.5";
    resume_case("ppo", "rollout", ppo, "REIN_TEST_KILL_IN_ROLLOUT=8", 6);
    const char *grpo = "--reward length:6 --iterations 10 --batch 2 --samples 4 --max-tokens 12 "
                       "--save-every 4 --lr 2e-2 --beta 0.05";
    resume_case("grpo", "after", grpo, "REIN_TEST_KILL_AFTER_STEP=6", 4);
    char rloo[512];
    snprintf(rloo, sizeof rloo, "%s --algo rloo --minibatches 2", grpo);
    resume_case("grpo", "rloo-rollout", rloo, "REIN_TEST_KILL_IN_ROLLOUT=6", 4);

    rein_buf out = {0};
    char args[2048];
    /* a reward model (a tiny one from `rein rm train`), weighted with a rule */
    char rm[256], line[4096];
    snprintf(rm, sizeof rm, "%s/rm", test_tmpdir());
    snprintf(line, sizeof line, "%s rm train -m %s --data tests/fixtures/data/pref.jsonl --out %s "
             "--max-steps 3 --lora-rank 4 --plain", bin, model, rm);
    if (test_run(line, 1, &out) == 0) {
        snprintf(args, sizeof args, "--out %s/with-rm --rm %s --weight 2 --reward length:6 "
                 "--iterations 3 --batch 3 --max-tokens 10 --eval %s --eval-n 5", test_tmpdir(), rm,
                 prompts);
        CHECKF(run(NULL, "ppo", args, &out) == 0 && strstr(out.data, "eval reward"), "%s", out.data);
        char path[512];
        snprintf(path, sizeof path, "%s/with-rm/metrics.jsonl", test_tmpdir());
        rein_buf mb = {0};
        CHECK_OK(rein_read_file(path, &mb));
        CHECK(mb.data && strstr(mb.data, "\"reward_0_rm\":") && strstr(mb.data, "\"eval_kl\":"));
        rein_buf_free(&mb);
        snprintf(path, sizeof path, "%s/with-rm/eval_0003.jsonl", test_tmpdir());
        CHECK(access(path, F_OK) == 0);
        printf("ppo against a reward model (rein rm train) + a length rule, with evaluation\n");
    } else {
        printf("SKIP the reward-model case: rein rm train failed: %s\n", out.data);
    }
    /* the metrics name what users watch for */
    char path[512];
    snprintf(path, sizeof path, "%s/straight-rollout/metrics.jsonl", test_tmpdir());
    rein_buf mb = {0};
    CHECK_OK(rein_read_file(path, &mb));
    const char *fields[] = {"\"kl\":", "\"kl_coef\":", "\"len\":", "\"eos_rate\":", "\"clipfrac\":",
                            "\"value_loss\":", "\"explained_var\":", "\"reward_0_length\":",
                            "\"reward_1_regex\":", "\"rollout_tok_s\":"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        CHECKF(mb.data && strstr(mb.data, fields[i]), "metrics lack %s", fields[i]);
    rein_buf_free(&mb);
    snprintf(path, sizeof path, "%s/straight-rollout/adapter/adapter_config.json", test_tmpdir());
    CHECK(access(path, F_OK) == 0);

    /* an existing run is never overwritten without --resume; other settings are refused */
    snprintf(args, sizeof args, "--out %s/straight-rollout %s", test_tmpdir(), ppo);
    CHECK(run(NULL, "ppo", args, &out) == 1 && strstr(out.data, "already holds a run"));
    snprintf(args, sizeof args, "--out %s/straight-rollout %s --clip-eps 0.3 --resume",
             test_tmpdir(), ppo);
    CHECK(run(NULL, "ppo", args, &out) == 1 && strstr(out.data, "settings differ"));

    /* a non-finite update is skipped and counted */
    snprintf(args, sizeof args, "--out %s/nan %s", test_tmpdir(), grpo);
    CHECKF(run("REIN_TEST_NAN_STEPS=3", "grpo", args, &out) == 0 &&
               strstr(out.data, "10 iterations, 1 skipped"), "%s", out.data);
    snprintf(args, sizeof args, "--out %s/nan-stop %s --max-bad-steps 2", test_tmpdir(), grpo);
    CHECKF(run("REIN_TEST_NAN_STEPS=3,4", "grpo", args, &out) == 1 &&
               strstr(out.data, "2 iterations in a row"), "%s", out.data);

    /* the KL alarm: stop, or halve the learning rate */
    snprintf(args, sizeof args, "--out %s/alarm-stop %s --kl-max 1e-9 --kl-alarm stop --lr 0.2",
             test_tmpdir(), grpo);
    CHECKF(run(NULL, "grpo", args, &out) == 1 && strstr(out.data, "passed --kl-max"), "%s", out.data);
    snprintf(args, sizeof args, "--out %s/alarm-lower %s --kl-max 1e-9 --lr 0.2", test_tmpdir(),
             grpo);
    CHECKF(run(NULL, "grpo", args, &out) == 0 && strstr(out.data, "learning rate scale now"), "%s",
           out.data);
    snprintf(path, sizeof path, "%s/alarm-lower/metrics.jsonl", test_tmpdir());
    CHECK_OK(rein_read_file(path, &mb));
    CHECK(mb.data && strstr(mb.data, "\"kl_alarm\":1") && strstr(mb.data, "\"lr\":0.1,"));
    rein_buf_free(&mb);

    /* bad prompt lines are listed with file and line; no reward is a usage error */
    char bad[256], cmd[2048];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", test_tmpdir());
    FILE *f = fopen(bad, "w");
    fputs("{\"prompt\":\"ok\"}\n{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}\nnot json\n"
          "{\"prompt\":\"x\",\"answer\":[1]}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s grpo -m %s --prompts %s --reward length:4 --out %s/badrun", bin,
             model, bad, test_tmpdir());
    int rc = test_run(cmd, 1, &out);
    CHECKF(rc == 1 && strstr(out.data, "bad.jsonl:2: messages[0].role") &&
               strstr(out.data, "bad.jsonl:3") && strstr(out.data, "bad.jsonl:4: answer"),
           "%s", out.data);
    snprintf(cmd, sizeof cmd, "%s ppo -m %s --prompts %s --out %s/x", bin, model, prompts,
             test_tmpdir());
    CHECK(test_run(cmd, 1, &out) == 2 && strstr(out.data, "no reward"));
    snprintf(cmd, sizeof cmd, "%s grpo -m %s --prompts %s --reward length:4 --samples 1 --out %s/x",
             bin, model, prompts, test_tmpdir());
    CHECK(test_run(cmd, 1, &out) == 1 && strstr(out.data, "--samples must be >= 2"));
    rein_buf_free(&out);
    return test_finish();
}
