/* clone.c - stage 4, verbose cloning (context distillation): the engraved model (base + the
 * stage-3 adapter, merged) answers every prompt whose principle-driven answer was kept, with a
 * system prompt that asks for thorough, detailed answers; the answers are filtered as in stage 2
 * (finished, not empty, no leaked format, not repetitive) and train a fresh adapter on the base
 * model without that system prompt, so answers are no longer cut short. */
#include "align/align.h"

#include <string.h>

rein_status rein_align_stage_clone(const rein_align_opts *o, const rein_align_inputs *in) {
    rein_rundb *db;
    REIN_TRY(rein_rundb_open(o->out_dir, &db));
    int gen_done = 0, engraved = 0;
    rein_status st = rein_rundb_stage_done(db, "clone answers", &gen_done);
    if (!st) st = rein_rundb_stage_done(db, "engrave", &engraved);
    if (!st && !engraved)
        st = rein_error(REIN_ERR_INVALID, "%s: stage 3 (engrave) is not done: run 'rein align "
                        "--stages 3' first", rein_rundb_path(db));
    if (!st && !gen_done) {
        double t0 = rein_time_now();
        char adapter[4200];
        snprintf(adapter, sizeof adapter, "%s/engrave/adapter", o->out_dir);
        rein_model *m = NULL;
        st = rein_align_load_model(o->model_path, adapter, &m);
        if (!st) st = rein_rundb_stage_set(db, "clone answers", "running", 0, NULL);
        if (!st) st = rein_align_answer_pending(db, m, o, in, "clone");
        rein_model_free(m);
        double secs = rein_time_now() - t0;
        if (!st) st = rein_rundb_stage_set(db, "clone answers", "done", secs,
                                           "verbose answers of the engraved model");
        else rein_rundb_stage_set(db, "clone answers", "running", secs, NULL);
    } else if (!st) {
        fprintf(stderr, "rein align: stage clone answers is done (see run.db); skipping it\n");
    }
    rein_rundb_close(db);
    REIN_TRY(st);
    return rein_align_train_stage(o, "clone", "clone");
}
