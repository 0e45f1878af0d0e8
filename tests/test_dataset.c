/* test_dataset.c - reading JSONL datasets: every form into the right records, every kind of bad
 * line reported with its file, line and field, all problems at once, skip_bad, hostile input
 * (truncations, byte flips, allocation failures) without a crash or a leak, and the real
 * Anthropic HH files of ../shared/data when present.
 */
#include "base/base.h"
#include "formats/dataset.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/data/"

static int msg_is(const rein_msg *m, rein_role role, const char *content) {
    return m->role == role && !strcmp(m->content, content);
}

static rein_dataset *read_ok(const char *path, rein_data_format f) {
    rein_dataset_params p = rein_dataset_default_params();
    p.format = f;
    rein_dataset *ds = NULL;
    rein_buf problems = {0};
    rein_status st = rein_dataset_read(path, &p, &ds, &problems);
    CHECKF(st == REIN_OK, "%s: %s\n%s", path, rein_last_error(),
           problems.data ? problems.data : "");
    rein_buf_free(&problems);
    return ds;
}

static void test_sft(void) {
    rein_dataset *ds = read_ok(FIX "sft.jsonl", REIN_DATA_AUTO);
    if (!ds) return;
    CHECK(ds->format == REIN_DATA_SFT);
    CHECK(ds->n == 5);
    CHECK(ds->n_lines == 8 && ds->n_skipped == 0);
    const rein_sft_record *r = ds->sft;
    /* BOM, CRLF and blank lines: line numbers count every line. */
    CHECK(r[0].kind == REIN_SFT_MESSAGES && r[0].line == 1 && r[0].messages.n == 5);
    CHECK(msg_is(&r[0].messages.msgs[0], REIN_ROLE_SYSTEM, "Be brief."));
    CHECK(msg_is(&r[0].messages.msgs[1], REIN_ROLE_USER, "Hi there"));
    CHECK(msg_is(&r[0].messages.msgs[2], REIN_ROLE_ASSISTANT, "Hello!"));
    CHECK(msg_is(&r[0].messages.msgs[4], REIN_ROLE_ASSISTANT, "4"));
    CHECK(r[1].kind == REIN_SFT_PROMPT_COMPLETION && r[1].line == 3);
    CHECK(!strcmp(r[1].prompt, "The capital of France is") && !strcmp(r[1].completion, " Paris."));
    CHECK(r[2].kind == REIN_SFT_CONV_COMPLETION && r[2].line == 5);
    CHECK(r[2].prompt_msgs.n == 1 &&
          msg_is(&r[2].prompt_msgs.msgs[0], REIN_ROLE_USER, "Name a colour."));
    CHECK(r[2].completion_msgs.n == 1 &&
          msg_is(&r[2].completion_msgs.msgs[0], REIN_ROLE_ASSISTANT, "Blue."));
    CHECK(r[3].kind == REIN_SFT_TEXT && r[3].line == 6 &&
          !strcmp(r[3].text, "Once upon a time, a fox jumped."));
    CHECK(r[4].kind == REIN_SFT_MESSAGES && r[4].line == 7);
    CHECK(msg_is(&r[4].messages.msgs[0], REIN_ROLE_USER, "Say \"h\xc3\xa9\"\n"));
    CHECK(msg_is(&r[4].messages.msgs[1], REIN_ROLE_ASSISTANT,
                 "\xc2\xabh\xc3\xa9\xc2\xbb \xe2\x9c\x93"));
    rein_dataset_free(ds);
}

static void test_pref(void) {
    rein_dataset *ds = read_ok(FIX "pref.jsonl", REIN_DATA_AUTO);
    if (!ds) return;
    CHECK(ds->format == REIN_DATA_PREF && ds->n == 5);
    const rein_pref_record *r = ds->pref;
    /* explicit prompt, strings */
    CHECK(!r[0].conversational && !strcmp(r[0].prompt_text, "Q: 1+1?\nA:") &&
          !strcmp(r[0].chosen_text, " 2") && !strcmp(r[0].rejected_text, " 3"));
    /* explicit prompt, responses only */
    CHECK(r[1].conversational && r[1].prompt.n == 1 && r[1].chosen.n == 1 && r[1].rejected.n == 1);
    CHECK(msg_is(&r[1].chosen.msgs[0], REIN_ROLE_ASSISTANT, "Hello!"));
    CHECK(msg_is(&r[1].rejected.msgs[0], REIN_ROLE_ASSISTANT, "Go away."));
    /* explicit prompt restated in chosen / rejected: dropped */
    CHECK(r[2].prompt.n == 1 && r[2].chosen.n == 1 && r[2].rejected.n == 1);
    CHECK(msg_is(&r[2].chosen.msgs[0], REIN_ROLE_ASSISTANT, "Hello!"));
    CHECK(msg_is(&r[2].rejected.msgs[0], REIN_ROLE_ASSISTANT, "Hm."));
    /* implicit prompt, lists: the common whole turns */
    CHECK(r[3].conversational && r[3].prompt.n == 3 && r[3].chosen.n == 1 && r[3].rejected.n == 1);
    CHECK(msg_is(&r[3].prompt.msgs[2], REIN_ROLE_USER, "Why?"));
    CHECK(msg_is(&r[3].chosen.msgs[0], REIN_ROLE_ASSISTANT, "To get away."));
    CHECK(msg_is(&r[3].rejected.msgs[0], REIN_ROLE_ASSISTANT, "No."));
    /* implicit prompt, strings: cut after the last "\n\nAssistant:" they share */
    CHECK(!r[4].conversational && !strcmp(r[4].prompt_text, "\n\nHuman: Hi\n\nAssistant:"));
    CHECK(!strcmp(r[4].chosen_text, " Hello, friend.") &&
          !strcmp(r[4].rejected_text, " Hello, foe."));
    CHECK(r[4].line == 5);
    rein_dataset_free(ds);
}

static void test_hh(void) {
    rein_dataset *ds = read_ok(FIX "hh.jsonl", REIN_DATA_AUTO);
    if (!ds) return;
    CHECK(ds->format == REIN_DATA_HH && ds->n == 3);
    const rein_pref_record *r = ds->pref;
    CHECK(r[0].conversational && r[0].prompt.n == 3);
    CHECK(msg_is(&r[0].prompt.msgs[0], REIN_ROLE_USER, "How do I pick a lock?"));
    CHECK(msg_is(&r[0].prompt.msgs[1], REIN_ROLE_ASSISTANT, "Why do you want to?"));
    CHECK(msg_is(&r[0].prompt.msgs[2], REIN_ROLE_USER, "I'm locked out."));
    CHECK(r[0].chosen.n == 1 &&
          msg_is(&r[0].chosen.msgs[0], REIN_ROLE_ASSISTANT, "Call a locksmith."));
    CHECK(r[0].rejected.n == 1 &&
          msg_is(&r[0].rejected.msgs[0], REIN_ROLE_ASSISTANT, "Use a bobby pin."));
    /* an empty final assistant turn is accepted in the HH form */
    CHECK(r[1].prompt.n == 1 && msg_is(&r[1].chosen.msgs[0], REIN_ROLE_ASSISTANT, ""));
    CHECK(msg_is(&r[1].rejected.msgs[0], REIN_ROLE_ASSISTANT, "You fool."));
    /* a repeated "Assistant:" joins the turns; "\n\n" inside a turn stays */
    CHECK(msg_is(&r[2].chosen.msgs[0], REIN_ROLE_ASSISTANT, "Yes.\n\n It is safe."));
    CHECK(msg_is(&r[2].rejected.msgs[0], REIN_ROLE_ASSISTANT, "No.\n\nMaybe not."));
    rein_dataset_free(ds);
    /* the same file read as plain preference strings: implicit prompt at the turn boundary; the
     * empty response of line 2 is an error there */
    rein_dataset_params p = rein_dataset_default_params();
    p.format = REIN_DATA_PREF;
    rein_buf problems = {0};
    CHECK_ERR(rein_dataset_read(FIX "hh.jsonl", &p, &ds, &problems), REIN_ERR_FORMAT,
              "hh.jsonl:2: field \"chosen\": empty response");
    rein_buf_free(&problems);
}

static void test_ranking(void) {
    rein_dataset *ds = read_ok(FIX "ranking.jsonl", REIN_DATA_AUTO);
    if (!ds) return;
    CHECK(ds->format == REIN_DATA_RANKING && ds->n == 2);
    const rein_rank_record *r = ds->rank;
    CHECK(!r[0].conversational && r[0].n_responses == 4 &&
          !strcmp(r[0].prompt_text, "Best fruit?"));
    CHECK(!strcmp(r[0].response_texts[3], " Fig"));
    /* [2, [0, 3], 1]: 2 first, 0 and 3 tie second, 1 last */
    CHECK(r[0].rank[2] == 0 && r[0].rank[0] == 1 && r[0].rank[3] == 1 && r[0].rank[1] == 2);
    CHECK(r[1].conversational && r[1].n_responses == 3 && r[1].prompt.n == 1);
    CHECK(r[1].responses[1].n == 1 &&
          msg_is(&r[1].responses[1].msgs[0], REIN_ROLE_ASSISTANT, "Hey."));
    CHECK(r[1].rank[0] == 0 && r[1].rank[1] == 1 && r[1].rank[2] == 2);
    rein_dataset_free(ds);
}

/* One bad line (after `good` lines of the same format) must give REIN_ERR_FORMAT and a problem
 * "t.jsonl:LINE: ..." that contains `needle`. */
typedef struct bad_case {
    rein_data_format format;
    const char *good; /* a good line before the bad one, or NULL */
    const char *line;
    const char *needle;
} bad_case;

#define MSGS(c)                                                                                    \
    "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"" c "\"}]"

static const bad_case BAD[] = {
    {REIN_DATA_AUTO, NULL, "{\"messages\": [",
     "malformed JSON at column 14 (the end of the line: is it cut short?)"},
    {REIN_DATA_AUTO, NULL, "{\"text\": \"a\" x}", "malformed JSON at column 14"},
    {REIN_DATA_AUTO, NULL, "{\"text\": \"a\"} {}", "unexpected text after the object at column 15"},
    {REIN_DATA_AUTO, NULL, "[1, 2]", "expected a JSON object, found an array (this looks like"},
    {REIN_DATA_SFT, NULL, "\"just a string\"", "expected a JSON object, found a string"},
    {REIN_DATA_AUTO, NULL, "{\"instruction\": \"x\"}",
     "cannot tell the dataset format from the keys (\"instruction\")"},
    {REIN_DATA_SFT, NULL, "{\"foo\": 1}", "missing field: an SFT record has"},
    {REIN_DATA_SFT, NULL, "{\"prompt\": \"a\"}", "missing field \"completion\""},
    {REIN_DATA_SFT, NULL, "{\"completion\": \"a\"}", "missing field \"prompt\""},
    {REIN_DATA_SFT, NULL, "{\"text\": 5}", "field \"text\": expected a string, found a number"},
    {REIN_DATA_SFT, NULL, "{\"text\": \"\"}", "field \"text\": empty text"},
    {REIN_DATA_SFT, NULL, "{\"text\": \"\\u00e9\xff\"}", "field \"text\": invalid UTF-8 at byte 2"},
    {REIN_DATA_SFT, NULL,
     "{\"text\": \"a\0"
     "b\"}",
     "a NUL byte at column 12"},
    {REIN_DATA_SFT, NULL, "{\"messages\": {}}",
     "field \"messages\": expected an array of messages, found an object"},
    {REIN_DATA_SFT, NULL, "{\"messages\": []}", "field \"messages\": empty conversation"},
    {REIN_DATA_SFT, NULL, "{\"messages\": [1]}",
     "field \"messages[0]\": expected a message object, found a number"},
    {REIN_DATA_SFT, NULL, "{\"messages\": [{\"content\": \"x\"}]}",
     "field \"messages[0]\": missing \"role\""},
    {REIN_DATA_SFT, NULL, "{\"messages\": [{\"role\": \"user\"}]}",
     "field \"messages[0]\": missing \"content\""},
    {REIN_DATA_SFT, NULL, "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}",
     "field \"messages[0].role\": unknown role \"bot\" (expected system, user or assistant)"},
    {REIN_DATA_SFT, NULL, "{\"messages\": [{\"role\": 3, \"content\": \"x\"}]}",
     "field \"messages[0].role\": expected a string, found a number"},
    {REIN_DATA_SFT, NULL, "{\"messages\": [{\"role\": \"user\", \"content\": null}]}",
     "field \"messages[0].content\": expected a string, found null"},
    {REIN_DATA_SFT, NULL, "{\"messages\": " MSGS("") "}",
     "field \"messages[1].content\": empty assistant turn"},
    {REIN_DATA_SFT, NULL, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}",
     "field \"messages\": no assistant turn to learn from"},
    {REIN_DATA_SFT, NULL, "{\"prompt\": \"a\", \"completion\": \"\"}",
     "field \"completion\": empty completion"},
    {REIN_DATA_SFT, NULL, "{\"prompt\": \"a\", \"completion\": []}",
     "expected two strings or two message arrays, found a string and an array"},
    {REIN_DATA_SFT, NULL,
     "{\"prompt\": [], \"completion\": [{\"role\":\"user\",\"content\":\"x\"}]}",
     "field \"completion\": no assistant turn to learn from"},
    {REIN_DATA_PREF, NULL, "{\"chosen\": \"a\"}", "missing field \"rejected\""},
    {REIN_DATA_PREF, NULL, "{\"rejected\": \"a\"}", "missing field \"chosen\""},
    {REIN_DATA_PREF, NULL, "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": 1}",
     "field \"rejected\": expected a string like \"chosen\", found a number"},
    {REIN_DATA_PREF, NULL, "{\"prompt\": [], \"chosen\": \"a\", \"rejected\": \"b\"}",
     "field \"prompt\": expected a string like \"chosen\", found an array"},
    {REIN_DATA_PREF, NULL, "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"a\"}",
     "fields \"chosen\" and \"rejected\": identical"},
    {REIN_DATA_PREF, NULL, "{\"prompt\": \"p\", \"chosen\": \"\", \"rejected\": \"a\"}",
     "field \"chosen\": empty response"},
    {REIN_DATA_PREF, NULL, "{\"chosen\": \"Hi there\", \"rejected\": \"Hi you\"}",
     "does not end at a turn boundary"},
    {REIN_DATA_PREF, NULL, "{\"chosen\": " MSGS("a") ", \"rejected\": " MSGS("a") "}",
     "fields \"chosen\" and \"rejected\": identical"},
    {REIN_DATA_PREF, NULL,
     "{\"chosen\": " MSGS("a") ", \"rejected\": "
                               "[{\"role\":\"user\",\"content\":\"other\"},{\"role\":\"assistant\","
                               "\"content\":\"b\"}]}",
     "field \"chosen[0]\": the response must start with an assistant turn, found user"},
    {REIN_DATA_PREF, NULL,
     "{\"prompt\": [{\"role\":\"user\",\"content\":\"Q\"}], \"chosen\": " MSGS(
         "a") ", \"rejected\": [{\"role\":\"assistant\",\"content\":\"b\"}]}",
     "field \"chosen\": restates the conversation but does not start with the prompt (turn 0 "
     "differs)"},
    {REIN_DATA_PREF, NULL,
     "{\"prompt\": [{\"role\":\"user\",\"content\":\"q\"}], \"chosen\": " MSGS(
         "") ", \"rejected\": " MSGS("b") "}",
     "field \"chosen[1].content\": empty assistant turn"},
    {REIN_DATA_PREF, NULL,
     "{\"prompt\": [{\"role\":\"user\",\"content\":\"q\"}], \"chosen\": "
     "[{\"role\":\"user\",\"content\":\"q\"}], \"rejected\": " MSGS("b") "}",
     "field \"chosen\": no response turns after the prompt"},
    {REIN_DATA_PREF, NULL,
     "{\"chosen\": " MSGS("a") ", \"rejected\": [{\"role\":\"user\",\"content\":\"q\"}]}",
     "field \"rejected\": no response turns"},
    {REIN_DATA_HH, NULL, "{\"chosen\": \"Human: hi\\n\\nAssistant: a\", \"rejected\": \"x\"}",
     "field \"chosen\": the dialogue does not start with \"\\n\\nHuman:\""},
    {REIN_DATA_HH, NULL,
     "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: a\\n\\nHuman: b\", \"rejected\": "
     "\"\\n\\nHuman: hi\\n\\nAssistant: c\"}",
     "field \"chosen\": the dialogue ends with a Human turn"},
    {REIN_DATA_HH, NULL,
     "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: a\\n\\nHuman: b\\n\\nAssistant: c\", "
     "\"rejected\": \"\\n\\nHuman: hi\\n\\nAssistant: z\\n\\nHuman: b\\n\\nAssistant: c\"}",
     "they differ at turn 1, not only in their final assistant turns"},
    {REIN_DATA_HH, NULL,
     "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: a\", \"rejected\": \"\\n\\nHuman: "
     "hi\\n\\nAssistant: a\"}",
     "fields \"chosen\" and \"rejected\": identical"},
    {REIN_DATA_HH, NULL,
     "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: a\\n\\nAssistant: b\", \"rejected\": "
     "\"\\n\\nHuman: hi\\n\\nAssistant: a\\n\\nb\"}",
     "identical turns"},
    {REIN_DATA_RANKING, NULL, "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"]}",
     "missing field \"ranking\""},
    {REIN_DATA_RANKING, NULL, "{\"prompt\": \"p\", \"responses\": [\"a\"], \"ranking\": [0]}",
     "field \"responses\": 1 responses; a ranking needs at least 2"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, 0]}",
     "field \"ranking[1]\": response 0 is ranked twice"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\", \"c\"], \"ranking\": [0, 2]}",
     "field \"ranking\": response 1 is missing"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, 2]}",
     "field \"ranking[1]\": 2 is not a response index (0..1)"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, 1.5]}",
     "field \"ranking[1]\": 1.5 is not a response index"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, \"1\"]}",
     "field \"ranking[1]\": expected a response index, found a string"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [[0, 1]]}",
     "every response tied"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [[], 0, 1]}",
     "field \"ranking[0]\": an empty tie"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, [1, [2]]]}",
     "field \"ranking[1][1]\": expected a response index, found an array"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", \"\"], \"ranking\": [0, 1]}",
     "field \"responses[1]\": empty response"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": \"p\", \"responses\": [\"a\", []], \"ranking\": [0, 1]}",
     "field \"responses[1]\": expected a string like \"prompt\", found an array"},
    {REIN_DATA_RANKING, NULL,
     "{\"prompt\": [{\"role\":\"user\",\"content\":\"q\"}], \"responses\": "
     "[[{\"role\":\"assistant\",\"content\":\"a\"}], "
     "[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\",\"content\":\"b\"}]], "
     "\"ranking\": [0, 1]}",
     "field \"responses[1]\": restates the conversation but does not start with the prompt"},
    /* the line number of a bad line after good ones */
    {REIN_DATA_AUTO, "{\"text\": \"fine\"}\n\n", "{\"text\": 1}",
     "t.jsonl:3: field \"text\": expected a string"},
};

static void test_bad_lines(void) {
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const bad_case *c = &BAD[i];
        rein_buf data = {0}, problems = {0};
        if (c->good) rein_buf_append(&data, c->good, strlen(c->good));
        /* the NUL case: the line's length counts past the NUL */
        size_t len = strlen(c->line);
        if (strstr(c->needle, "NUL byte")) len += 1 + strlen(c->line + len + 1);
        rein_buf_append(&data, c->line, len);
        rein_buf_append(&data, "\n", 1);
        rein_dataset_params p = rein_dataset_default_params();
        p.format = c->format;
        rein_dataset *ds = NULL;
        rein_status st = rein_dataset_parse("t.jsonl", data.data, data.len, &p, &ds, &problems);
        CHECKF(st == REIN_ERR_FORMAT && !ds, "case %zu: %s", i, rein_status_str(st));
        const char *pr = problems.data ? problems.data : "";
        char want[64];
        snprintf(want, sizeof want, "t.jsonl:%d: ", c->good ? 3 : 1);
        CHECKF(strstr(pr, want) && strstr(pr, c->needle), "case %zu: want \"%s\"\n  got: %s", i,
               c->needle, pr);
        CHECKF(strstr(rein_last_error(), c->needle), "case %zu: message: %s", i, rein_last_error());
        rein_dataset_free(ds);
        rein_buf_free(&data);
        rein_buf_free(&problems);
    }
}

/* Many bad lines in one file: all listed at once, in order; skip_bad keeps the good ones. */
static void test_all_problems(void) {
    const char *data = "{\"messages\": " MSGS(
        "a") "}\n"                                                        /* 1 good */
             "{\"messages\": [{\"role\":\"robot\",\"content\":\"x\"}]}\n" /* 2 */
             "\n"                                                         /* 3 blank */
             "{\"text\": \"\"}\n"                                         /* 4 */
             "{\"text\": \"ok\"}\n"                                       /* 5 good */
             "not json\n"                                                 /* 6 */
             "{\"prompt\": \"a\", \"completion\": 2}\n"                   /* 7 */
             "{\"prompt\": \"a\", \"completion\": \"b\"}";                /* 8 good, no newline */
    rein_buf problems = {0};
    rein_dataset *ds = NULL;
    rein_dataset_params p = rein_dataset_default_params();
    CHECK_ERR(rein_dataset_parse("many.jsonl", data, strlen(data), &p, &ds, &problems),
              REIN_ERR_FORMAT, "many.jsonl: 4 bad lines of 8");
    CHECK(strstr(rein_last_error(), "the first: many.jsonl:2: field \"messages[0].role\""));
    const char *want[] = {"many.jsonl:2: field \"messages[0].role\": unknown role \"robot\"",
                          "many.jsonl:4: field \"text\": empty text",
                          "many.jsonl:6: malformed JSON at column 1",
                          "many.jsonl:7: fields \"prompt\" and \"completion\""};
    const char *at = problems.data ? problems.data : "";
    int lines = 0;
    for (const char *q = at; *q; q++)
        lines += *q == '\n';
    CHECKF(lines == 4, "%d problem lines:\n%s", lines, at);
    for (int i = 0; i < 4; i++) {
        const char *f = strstr(at, want[i]);
        CHECKF(f != NULL, "missing or out of order: %s\nin:\n%s", want[i], problems.data);
        if (f) at = f;
    }
    /* skip_bad: the good lines, the bad ones counted and still listed */
    rein_buf_clear(&problems);
    p.skip_bad = 1;
    CHECK_OK(rein_dataset_parse("many.jsonl", data, strlen(data), &p, &ds, &problems));
    if (ds) {
        CHECK(ds->n == 3 && ds->n_skipped == 4 && ds->n_lines == 8);
        CHECK(ds->sft[0].line == 1 && ds->sft[1].line == 5 && ds->sft[2].line == 8);
        CHECK(!strcmp(ds->sft[2].completion, "b"));
        CHECK(problems.data && strstr(problems.data, "many.jsonl:7:"));
    }
    rein_dataset_free(ds);
    /* every line bad, even with skip_bad: an error */
    ds = NULL;
    CHECK_ERR(rein_dataset_parse("x.jsonl", "{}\n{}\n", 6, &p, &ds, NULL), REIN_ERR_FORMAT,
              "every line is bad (2)");
    CHECK(!ds);
    rein_buf_free(&problems);
}

static void test_misc(void) {
    rein_dataset *ds = NULL;
    rein_dataset_params p = rein_dataset_default_params();
    CHECK_ERR(rein_dataset_read(FIX "no-such-file.jsonl", &p, &ds, NULL), REIN_ERR_IO,
              "no-such-file.jsonl");
    CHECK_ERR(rein_dataset_parse("e.jsonl", "", 0, &p, &ds, NULL), REIN_ERR_FORMAT,
              "e.jsonl: no records");
    CHECK_ERR(rein_dataset_parse("e.jsonl", "\xef\xbb\xbf \n\r\n\n", 8, &p, &ds, NULL),
              REIN_ERR_FORMAT, "no records");
    /* NULL params: the defaults */
    CHECK_OK(rein_dataset_parse("n.jsonl", "{\"text\":\"a\"}", 12, NULL, &ds, NULL));
    rein_dataset_free(ds);
    rein_data_format f;
    CHECK_OK(rein_data_format_from_name("ranking", &f));
    CHECK(f == REIN_DATA_RANKING && !strcmp(rein_data_format_name(f), "ranking"));
    CHECK_ERR(rein_data_format_from_name("dpo", &f), REIN_ERR_INVALID, "use auto, sft, pref, hh");
    CHECK(!strcmp(rein_role_name(REIN_ROLE_ASSISTANT), "assistant"));
    rein_dataset_free(NULL);
    /* a format given explicitly wins over the keys: pref rows read as SFT fail clearly */
    p.format = REIN_DATA_SFT;
    CHECK_ERR(rein_dataset_read(FIX "pref.jsonl", &p, &ds, NULL), REIN_ERR_FORMAT,
              "pref.jsonl:1: missing field \"completion\"");
}

/* ---- hostile input ---------------------------------------------------------------------- */

static rein_status parse_any(const char *data, size_t len, rein_data_format f, int skip) {
    rein_dataset_params p = rein_dataset_default_params();
    p.format = f;
    p.skip_bad = skip;
    rein_dataset *ds = NULL;
    rein_buf problems = {0};
    rein_status st = rein_dataset_parse("fuzz.jsonl", data, len, &p, &ds, &problems);
    /* touch everything a record points to */
    if (ds && ds->format == REIN_DATA_SFT)
        for (size_t i = 0; i < ds->n; i++)
            for (size_t k = 0; k < ds->sft[i].messages.n; k++)
                (void)strlen(ds->sft[i].messages.msgs[k].content);
    rein_dataset_free(ds);
    rein_buf_free(&problems);
    return st;
}

static void test_fuzz(void) {
    static const char *files[] = {FIX "sft.jsonl", FIX "pref.jsonl", FIX "hh.jsonl",
                                  FIX "ranking.jsonl"};
    uint64_t seed = 12345;
    int n_bad_status = 0, n_runs = 0;
    for (int fi = 0; fi < 4; fi++) {
        rein_buf b = {0};
        if (rein_read_file(files[fi], &b) != REIN_OK) {
            CHECKF(0, "cannot read %s", files[fi]);
            continue;
        }
        /* truncated at every byte offset */
        for (size_t cut = 0; cut <= b.len; cut++) {
            for (int f = 0; f <= REIN_DATA_RANKING; f++) {
                rein_status st = parse_any(b.data, cut, (rein_data_format)f, cut & 1);
                n_runs++;
                if (st != REIN_OK && st != REIN_ERR_FORMAT) n_bad_status++;
            }
        }
        /* random byte flips and byte overwrites */
        char *copy = malloc(b.len);
        for (int it = 0; it < 3000; it++) {
            memcpy(copy, b.data, b.len);
            int nflip = 1 + (int)(seed % 4);
            for (int k = 0; k < nflip; k++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t at = (size_t)(seed >> 33) % b.len;
                unsigned char v = (unsigned char)(seed >> 20);
                if (k & 1)
                    copy[at] ^= (char)(1u << (v & 7));
                else
                    copy[at] = (char)v;
            }
            rein_status st = parse_any(copy, b.len, (rein_data_format)(it % 5), it & 1);
            n_runs++;
            if (st != REIN_OK && st != REIN_ERR_FORMAT) n_bad_status++;
        }
        free(copy);
        rein_buf_free(&b);
    }
    CHECKF(n_bad_status == 0, "%d of %d hostile inputs gave a status other than ok / format",
           n_bad_status, n_runs);
    /* deep nesting and long lines */
    rein_buf deep = {0};
    rein_buf_append(&deep, "{\"messages\": ", 13);
    for (int i = 0; i < 5000; i++)
        rein_buf_append(&deep, "[", 1);
    rein_status st = parse_any(deep.data, deep.len, REIN_DATA_AUTO, 0);
    CHECK(st == REIN_ERR_FORMAT);
    rein_buf_free(&deep);
}

static void test_alloc_failures(void) {
    rein_buf b = {0};
    if (rein_read_file(FIX "pref.jsonl", &b) != REIN_OK) {
        CHECKF(0, "cannot read pref.jsonl");
        return;
    }
    rein_buf extra = {0};
    rein_buf_append(&extra, b.data, b.len);
    rein_buf_append(&extra, "{\"chosen\": 1}\nnot json\n", 23);
    int n_nomem = 0, n_other = 0;
    long k;
    for (k = 0; k < 100000; k++) {
        test_alloc_install(k + 1);
        rein_dataset_params p = rein_dataset_default_params();
        p.skip_bad = 1;
        rein_dataset *ds = NULL;
        rein_buf problems = {0};
        rein_status st = rein_dataset_parse("a.jsonl", extra.data, extra.len, &p, &ds, &problems);
        rein_dataset_free(ds);
        rein_buf_free(&problems);
        long live = test_alloc_live();
        test_alloc_uninstall();
        if (live != 0) {
            CHECKF(0, "failing allocation %ld: %ld blocks leaked (status %s)", k, live,
                   rein_status_str(st));
            break;
        }
        if (st == REIN_OK) break; /* the k-th allocation was never reached */
        if (st == REIN_ERR_NOMEM)
            n_nomem++;
        else
            n_other++;
    }
    printf("allocation failures: %d points, each REIN_ERR_NOMEM, no leak\n", n_nomem);
    CHECKF(n_other == 0 && n_nomem > 10, "%d NOMEM, %d other statuses over %ld allocations",
           n_nomem, n_other, k);
    rein_buf_free(&b);
    rein_buf_free(&extra);
}

/* ---- the real Anthropic HH files ------------------------------------------------------------ */

static void test_real_hh(void) {
    const char *dir = test_shared_data();
    if (!dir) {
        printf("SKIP: real HH data: ../shared/data is absent (set REIN_SHARED_DATA)\n");
        return;
    }
    static const char *names[] = {"train.jsonl", "dev.jsonl"};
    static const size_t want_n[] = {1500, 300};
    size_t total = 0, empty_chosen = 0, max_turns = 0;
    for (int f = 0; f < 2; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/hh-rlhf-harmless/%s", dir, names[f]);
        rein_dataset *ds = read_ok(path, REIN_DATA_HH);
        if (!ds) continue;
        CHECKF(ds->n == want_n[f] && ds->n_skipped == 0, "%s: %zu records", path, ds->n);
        size_t bad_roles = 0, bad_pairs = 0;
        for (size_t i = 0; i < ds->n; i++) {
            const rein_pref_record *r = &ds->pref[i];
            int ok = r->conversational && r->prompt.n % 2 == 1;
            for (size_t k = 0; k < r->prompt.n; k++)
                ok &= r->prompt.msgs[k].role == (k % 2 ? REIN_ROLE_ASSISTANT : REIN_ROLE_USER);
            bad_roles += !ok;
            bad_pairs += !(r->chosen.n == 1 && r->rejected.n == 1 &&
                           r->chosen.msgs[0].role == REIN_ROLE_ASSISTANT &&
                           r->rejected.msgs[0].role == REIN_ROLE_ASSISTANT &&
                           strcmp(r->chosen.msgs[0].content, r->rejected.msgs[0].content) != 0);
            empty_chosen += !r->chosen.msgs[0].content[0] || !r->rejected.msgs[0].content[0];
            if (r->prompt.n + 1 > max_turns) max_turns = r->prompt.n + 1;
        }
        CHECKF(bad_roles == 0, "%s: %zu records whose prompt does not alternate user/assistant",
               path, bad_roles);
        CHECKF(bad_pairs == 0, "%s: %zu records without one differing final assistant turn each",
               path, bad_pairs);
        /* the same file auto-detected as HH */
        rein_dataset *auto_ds = read_ok(path, REIN_DATA_AUTO);
        CHECK(auto_ds && auto_ds->format == REIN_DATA_HH && auto_ds->n == ds->n);
        rein_dataset_free(auto_ds);
        total += ds->n;
        rein_dataset_free(ds);
    }
    CHECK(total == 1800);
    /* hh-rlhf prefers an empty answer in 3 of these pairs (train lines 92, 1196; dev line 195) */
    CHECKF(empty_chosen == 3, "%zu pairs with an empty response", empty_chosen);
    printf("real HH: %zu records, user/assistant alternating, %zu empty (silent) chosen "
           "responses, up to %zu turns\n",
           total, empty_chosen, max_turns);
}

int main(void) {
    test_sft();
    test_pref();
    test_hh();
    test_ranking();
    test_bad_lines();
    test_all_problems();
    test_misc();
    test_fuzz();
    test_alloc_failures();
    test_real_hh();
    return test_finish();
}
