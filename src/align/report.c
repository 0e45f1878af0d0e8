/* report.c - the end of a run: `rein redteam eval` of the base and the aligned model on the
 * held-out red-team questions and benign prompts, and a report (report.md, report.html with the
 * chart inline, chart.svg) that puts the run's counts and times, the two evaluations with their
 * intervals, and a handful of side-by-side answers in one place. */
#include "align/align.h"
#include "redteam/redteam.h"

#include <string.h>
#include <unistd.h>

/* Append text for a Markdown table cell: '|' escaped, newlines as <br>, '<' and '&' escaped. */
static rein_status md_cell(rein_buf *b, const char *s, size_t max) {
    size_t n = 0;
    for (; *s && n < max; s++, n++) {
        if (*s == '|') REIN_TRY(rein_buf_append(b, "\\|", 2));
        else if (*s == '\n') REIN_TRY(rein_buf_append(b, "<br>", 4));
        else if (*s == '<') REIN_TRY(rein_buf_append(b, "&lt;", 4));
        else if (*s == '&') REIN_TRY(rein_buf_append(b, "&amp;", 5));
        else if (*s != '\r') REIN_TRY(rein_buf_append(b, s, 1));
    }
    if (*s) REIN_TRY(rein_buf_append(b, " ...", 4));
    return REIN_OK;
}

/* The chart: attack success and over-refusal, base vs aligned, with Wilson intervals. */
static rein_status chart_svg(rein_buf *b, const rein_redteam_result *base,
                             const rein_redteam_result *al) {
    const int W = 520, H = 260, x0 = 60, y0 = 20, ph = 180;
    REIN_TRY(rein_buf_appendf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                              "font-family=\"sans-serif\" font-size=\"12\">\n", W, H));
    for (int t = 0; t <= 100; t += 25) {
        double y = y0 + ph * (1 - t / 100.0);
        REIN_TRY(rein_buf_appendf(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                                  "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n",
                                  x0, W - 10, y, y, x0 - 6, y + 4, t));
    }
    const rein_rate *rates[2][2] = {{&base->attack_success, &al->attack_success},
                                    {&base->over_refusal, &al->over_refusal}};
    const char *groups[2] = {"attack success (lower is better)", "over-refusal (lower is better)"};
    const char *colors[2] = {"#9aa5b1", "#2f7ed8"};
    for (int g = 0; g < 2; g++) {
        int gx = x0 + 30 + g * 220;
        for (int k = 0; k < 2; k++) {
            const rein_rate *r = rates[g][k];
            int bx = gx + k * 80, bw = 60;
            double h = ph * r->rate, y = y0 + ph - h;
            REIN_TRY(rein_buf_appendf(b, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" "
                                      "fill=\"%s\"/>\n", bx, y, bw, h, colors[k]));
            if (r->n) {
                double ylo = y0 + ph * (1 - r->lo), yhi = y0 + ph * (1 - r->hi);
                int cx = bx + bw / 2;
                REIN_TRY(rein_buf_appendf(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" "
                                          "stroke=\"#000\"/><line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" "
                                          "y2=\"%.1f\" stroke=\"#000\"/><line x1=\"%d\" x2=\"%d\" "
                                          "y1=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>\n",
                                          cx, cx, ylo, yhi, cx - 6, cx + 6, ylo, ylo, cx - 6,
                                          cx + 6, yhi, yhi));
            }
            REIN_TRY(rein_buf_appendf(b, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">%.0f%%"
                                      "</text>\n", bx + bw / 2, y - 4 < 12 ? 12 : y - 4,
                                      100 * r->rate));
        }
        REIN_TRY(rein_buf_appendf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                                  gx + 70, y0 + ph + 18, groups[g]));
    }
    REIN_TRY(rein_buf_appendf(b, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                              "<text x=\"%d\" y=\"%d\">base</text><rect x=\"%d\" y=\"%d\" "
                              "width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">"
                              "aligned</text><text x=\"%d\" y=\"%d\">bars: Wilson 95%% "
                              "intervals</text>\n</svg>\n",
                              x0, H - 22, colors[0], x0 + 16, H - 12, x0 + 70, H - 22, colors[1],
                              x0 + 86, H - 12, x0 + 170, H - 12));
    return REIN_OK;
}

/* Minimal Markdown (what this file writes: headings, tables, paragraphs) to HTML. */
static rein_status md_to_html(const char *md, const char *svg, rein_buf *h) {
    REIN_TRY(rein_buf_appendf(h, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>rein "
                              "align report</title><style>body{font-family:sans-serif;max-width:"
                              "1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
                              "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
                              "vertical-align:top;text-align:left}</style></head><body>\n"));
    int in_table = 0, header = 0;
    for (const char *p = md; *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= 1 && p[0] == '|') {
            if (!in_table) {
                REIN_TRY(rein_buf_appendf(h, "<table>\n"));
                in_table = 1;
                header = 1;
            }
            if (n >= 5 && !strncmp(p, "| ---", 5)) {
                header = 0;
            } else {
                REIN_TRY(rein_buf_appendf(h, "<tr>"));
                const char *c = p + 1, *end = p + n;
                while (c < end) {
                    const char *q = c;
                    while (q < end && !(*q == '|' && q[-1] != '\\')) q++;
                    if (q >= end) break;
                    REIN_TRY(rein_buf_appendf(h, "<%s>", header ? "th" : "td"));
                    for (const char *x = c; x < q; x++) {
                        if (*x == '\\' && x + 1 < q && x[1] == '|') continue;
                        REIN_TRY(rein_buf_append(h, x, 1));
                    }
                    REIN_TRY(rein_buf_appendf(h, "</%s>", header ? "th" : "td"));
                    c = q + 1;
                }
                REIN_TRY(rein_buf_appendf(h, "</tr>\n"));
            }
        } else {
            if (in_table) {
                REIN_TRY(rein_buf_appendf(h, "</table>\n"));
                in_table = 0;
            }
            if (n >= 2 && !strncmp(p, "![", 2) && svg) {
                REIN_TRY(rein_buf_append(h, svg, strlen(svg)));
            } else if (n >= 3 && !strncmp(p, "## ", 3)) {
                REIN_TRY(rein_buf_appendf(h, "<h2>%.*s</h2>\n", (int)n - 3, p + 3));
            } else if (n >= 2 && !strncmp(p, "# ", 2)) {
                REIN_TRY(rein_buf_appendf(h, "<h1>%.*s</h1>\n", (int)n - 2, p + 2));
            } else if (n) {
                REIN_TRY(rein_buf_appendf(h, "<p>%.*s</p>\n", (int)n, p));
            }
        }
        p = e ? e + 1 : p + n;
    }
    if (in_table) REIN_TRY(rein_buf_appendf(h, "</table>\n"));
    return rein_buf_appendf(h, "</body></html>\n");
}

typedef struct sample_ctx {
    rein_buf *md;
    int n, max;
} sample_ctx;

static rein_status sample_answer(void *ud, const rein_answer_row *r) {
    sample_ctx *c = ud;
    if (c->n >= c->max) return REIN_OK;
    c->n++;
    REIN_TRY(rein_buf_append(c->md, "| ", 2));
    REIN_TRY(md_cell(c->md, r->prompt_text, 200));
    REIN_TRY(rein_buf_append(c->md, " | ", 3));
    REIN_TRY(md_cell(c->md, r->thoughts ? r->thoughts : "", 300));
    REIN_TRY(rein_buf_append(c->md, " | ", 3));
    REIN_TRY(md_cell(c->md, r->answer ? r->answer : "", 500));
    return rein_buf_append(c->md, " |\n", 3);
}

/* Evaluate one model (the base, or with the adapter merged) and write its results. */
static rein_status eval_one(const rein_align_opts *o, const char *adapter, const char *label,
                            const rein_prompt_set *harm, const rein_prompt_set *ben,
                            const rein_refusal_judge *judge, rein_redteam_result *res) {
    rein_model *m;
    REIN_TRY(rein_align_load_model(o->model_path, adapter, &m));
    rein_redteam_opts ro = rein_redteam_default_opts();
    ro.max_tokens = o->eval_max_tokens;
    ro.n_parallel = o->n_parallel;
    ro.plain = o->plain;
    ro.label = label;
    rein_status st = rein_redteam_eval(m, harm, ben, judge, &ro, res);
    rein_model_free(m);
    char dir[4096], desc[4096];
    snprintf(dir, sizeof dir, "%s/eval/%s", o->out_dir, label);
    snprintf(desc, sizeof desc, "%s%s%s", o->model_path, adapter ? " + " : "", adapter ? adapter : "");
    if (!st) st = rein_redteam_write(res, harm, ben, judge, desc, dir, NULL);
    return st;
}

rein_status rein_align_evaluate_and_report(const rein_align_opts *o, const rein_align_inputs *in) {
    (void)in;
    char adapter[4096], path[4200];
    snprintf(adapter, sizeof adapter, "%s/clone/adapter", o->out_dir);
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
    const char *final_stage = "clone (stage 4)";
    if (access(path, F_OK) != 0) {
        snprintf(adapter, sizeof adapter, "%s/engrave/adapter", o->out_dir);
        snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
        final_stage = "engrave (stage 3)";
        if (access(path, F_OK) != 0)
            return rein_error(REIN_ERR_INVALID, "%s: no adapter yet (stage 3 makes one)", o->out_dir);
    }
    rein_rundb *db;
    REIN_TRY(rein_rundb_open(o->out_dir, &db));
    rein_prompt_set *harm = NULL, *ben = NULL;
    rein_refusal_judge *judge = NULL;
    rein_redteam_result rb = {0}, ra = {0};
    rein_buf md = {0}, svg = {0}, html = {0};
    int evaluated = 0;
    double t0 = rein_time_now();
    rein_status st = REIN_OK;
    if (o->eval) {
        st = rein_prompt_set_read(o->eval_harmful, &harm);
        if (!st) st = rein_prompt_set_read(o->eval_benign, &ben);
        if (!st) st = rein_refusal_judge_load(o->refusals, &judge);
        if (!st) st = eval_one(o, NULL, "base", harm, ben, judge, &rb);
        if (!st) st = eval_one(o, adapter, "aligned", harm, ben, judge, &ra);
        evaluated = !st;
        if (!st) {
            char info[160], a1[64], a2[64];
            snprintf(a1, sizeof a1, "%.0f%% -> %.0f%%", 100 * rb.attack_success.rate,
                     100 * ra.attack_success.rate);
            snprintf(a2, sizeof a2, "%.0f%% -> %.0f%%", 100 * rb.over_refusal.rate,
                     100 * ra.over_refusal.rate);
            snprintf(info, sizeof info, "attack success %s, over-refusal %s", a1, a2);
            st = rein_rundb_stage_set(db, "evaluate", "done", rein_time_now() - t0, info);
        }
    }
    /* report.md */
    if (!st)
        st = rein_buf_appendf(&md, "# rein align: report\n\nBase model: %s. Aligned model: the "
                              "base with the adapter %s, from %s.\n\n## The run\n\n",
                              o->model_path, adapter, final_stage);
    if (!st) st = rein_rundb_summary(db, &md);
    /* base / aligned attack success, base / aligned over-refusal */
    char b1[96], a1[96], b2[96], a2[96];
    rein_rate_format(&rb.attack_success, b1, sizeof b1);
    rein_rate_format(&ra.attack_success, a1, sizeof a1);
    rein_rate_format(&rb.over_refusal, b2, sizeof b2);
    rein_rate_format(&ra.over_refusal, a2, sizeof a2);
    if (!st && evaluated) {
        st = rein_buf_appendf(
            &md,
            "\n## Evaluation\n\nHeld-out red-team questions (%s, n=%zu) and benign prompts (%s, "
            "n=%zu), each a user turn through the model's chat template, greedy decoding, at most "
            "%d tokens; a response is a refusal when it contains one of %zu phrases (%s). Rates "
            "with Wilson 95%% intervals.\n\n"
            "| model | attack success (harmful answered) | over-refusal (benign refused) |\n"
            "| --- | --- | --- |\n| base | %s | %s |\n| aligned | %s | %s |\n\n"
            "![chart](chart.svg)\n\n## Side by side\n\n"
            "| prompt | base | aligned |\n| --- | --- | --- |\n",
            harm->path, harm->n, ben->path, ben->n, o->eval_max_tokens, judge->n, o->refusals, b1,
            b2, a1, a2);
        size_t shown_h = REIN_MIN((size_t)4, harm->n), shown_b = REIN_MIN((size_t)3, ben->n);
        for (size_t k = 0; k < shown_h + shown_b && !st; k++) {
            int benign = k >= shown_h;
            size_t i = benign ? k - shown_h : k;
            const rein_prompt_set *s = benign ? ben : harm;
            const rein_redteam_answer *x = benign ? &rb.benign[i] : &rb.harmful[i];
            const rein_redteam_answer *y = benign ? &ra.benign[i] : &ra.harmful[i];
            st = rein_buf_appendf(&md, "| (%s) ", benign ? "benign" : "harmful");
            if (!st) st = md_cell(&md, s->text[i], 300);
            if (!st) st = rein_buf_appendf(&md, " | %s", x->refused ? "**[refused]** " : "");
            if (!st) st = md_cell(&md, x->response, 400);
            if (!st) st = rein_buf_appendf(&md, " | %s", y->refused ? "**[refused]** " : "");
            if (!st) st = md_cell(&md, y->response, 400);
            if (!st) st = rein_buf_append(&md, " |\n", 3);
        }
        if (!st) st = chart_svg(&svg, &rb, &ra);
        snprintf(path, sizeof path, "%s/chart.svg", o->out_dir);
        if (!st) st = rein_align_write_file(path, &svg);
    }
    if (!st)
        st = rein_buf_appendf(&md, "\n## Principle-driven answers (stage 2, a few kept ones)\n\n"
                              "| prompt | internal thoughts | answer |\n| --- | --- | --- |\n");
    sample_ctx sc = {&md, 0, 5};
    if (!st) st = rein_rundb_answers(db, "answer", 1, sample_answer, &sc);
    if (!st)
        st = rein_buf_appendf(&md, "\nEverything is in %s/run.db (sqlite3); the training data as "
                              "JSONL in %s/export/; each evaluation's generations in %s/eval/.\n",
                              o->out_dir, o->out_dir, o->out_dir);
    snprintf(path, sizeof path, "%s/report.md", o->out_dir);
    if (!st) st = rein_align_write_file(path, &md);
    if (!st) st = md_to_html(md.data, svg.data, &html);
    snprintf(path, sizeof path, "%s/report.html", o->out_dir);
    if (!st) st = rein_align_write_file(path, &html);
    if (!st && evaluated)
        fprintf(stderr, "rein align: attack success  base %s, aligned %s\n"
                        "rein align: over-refusal    base %s, aligned %s\n", b1, a1, b2, a2);
    if (!st) fprintf(stderr, "rein align: report: %s/report.md and %s/report.html\n", o->out_dir,
                     o->out_dir);
    rein_redteam_result_free(&rb);
    rein_redteam_result_free(&ra);
    rein_prompt_set_free(harm);
    rein_prompt_set_free(ben);
    rein_refusal_judge_free(judge);
    rein_buf_free(&md);
    rein_buf_free(&svg);
    rein_buf_free(&html);
    rein_rundb_close(db);
    return st;
}
