/* rundb.c - the alignment run's SQLite database (see rundb.h). The only file that talks to
 * SQLite. Every statement's error names the database file and what was being done. */
#include "align/rundb.h"
#include "base/base.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

struct rein_rundb {
    sqlite3 *db;
    char *path;
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS prompts(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, source TEXT,"
    " topic TEXT, round INTEGER, text TEXT NOT NULL, kept INTEGER NOT NULL, reason TEXT,"
    " detail TEXT);"
    "CREATE INDEX IF NOT EXISTS prompts_kind ON prompts(kind, kept);"
    "CREATE TABLE IF NOT EXISTS answers(id INTEGER PRIMARY KEY, prompt INTEGER NOT NULL"
    " REFERENCES prompts(id), stage TEXT NOT NULL, raw TEXT NOT NULL, thoughts TEXT, answer TEXT,"
    " n_tokens INTEGER, ending TEXT, kept INTEGER NOT NULL, reason TEXT, detail TEXT,"
    " UNIQUE(prompt, stage));"
    "CREATE TABLE IF NOT EXISTS stages(name TEXT PRIMARY KEY, status TEXT NOT NULL,"
    " seconds REAL, info TEXT);";

static rein_status db_err(rein_rundb *db, const char *what) {
    return rein_error(REIN_ERR_IO, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

static rein_status mkdir_p(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return rein_error(REIN_ERR_IO, "%s: cannot create the folder: %s", tmp, strerror(errno));
        *p = c;
        if (!c) break;
    }
    return REIN_OK;
}

rein_status rein_rundb_open(const char *dir, rein_rundb **out) {
    *out = NULL;
    REIN_TRY(mkdir_p(dir));
    rein_rundb *db = rein_calloc(1, sizeof *db);
    if (!db) return REIN_ERR_NOMEM;
    rein_buf p = {0};
    rein_status st = rein_buf_appendf(&p, "%s/run.db", dir);
    db->path = p.data;
    if (st) {
        rein_free(db);
        return st;
    }
    if (sqlite3_open(db->path, &db->db) != SQLITE_OK) {
        st = db_err(db, "cannot open");
    } else {
        sqlite3_busy_timeout(db->db, 5000);
        char *msg = NULL;
        if (sqlite3_exec(db->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
            st = rein_error(REIN_ERR_IO, "%s: creating the tables: %s (not a rein run database?)",
                            db->path, msg ? msg : "?");
            sqlite3_free(msg);
        }
    }
    if (st) {
        rein_rundb_close(db);
        return st;
    }
    *out = db;
    return REIN_OK;
}

void rein_rundb_close(rein_rundb *db) {
    if (!db) return;
    sqlite3_close(db->db);
    rein_free(db->path);
    rein_free(db);
}

const char *rein_rundb_path(const rein_rundb *db) {
    return db->path;
}

static rein_status exec(rein_rundb *db, const char *sql) {
    if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_err(db, sql);
    return REIN_OK;
}

rein_status rein_rundb_begin(rein_rundb *db) { return exec(db, "BEGIN IMMEDIATE"); }
rein_status rein_rundb_commit(rein_rundb *db) { return exec(db, "COMMIT"); }

static rein_status prepare(rein_rundb *db, const char *sql, sqlite3_stmt **s) {
    if (sqlite3_prepare_v2(db->db, sql, -1, s, NULL) != SQLITE_OK) return db_err(db, sql);
    return REIN_OK;
}

static void bind_text(sqlite3_stmt *s, int i, const char *t) {
    if (t) sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s, i);
}

static const char *col_text(sqlite3_stmt *s, int i) {
    return (const char *)sqlite3_column_text(s, i);
}

/* Step a statement that returns no rows, then finalize it. */
static rein_status step_done(rein_rundb *db, sqlite3_stmt *s, const char *what) {
    int rc = sqlite3_step(s);
    rein_status st = rc == SQLITE_DONE ? REIN_OK : db_err(db, what);
    sqlite3_finalize(s);
    return st;
}

rein_status rein_rundb_meta_get(rein_rundb *db, const char *key, rein_buf *out, int *found) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "SELECT value FROM meta WHERE key = ?", &s));
    bind_text(s, 1, key);
    *found = 0;
    rein_status st = REIN_OK;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *found = 1;
        rein_buf_clear(out);
        const char *v = col_text(s, 0);
        st = rein_buf_append(out, v ? v : "", v ? strlen(v) : 0);
    } else if (rc != SQLITE_DONE) {
        st = db_err(db, "reading meta");
    }
    sqlite3_finalize(s);
    return st;
}

rein_status rein_rundb_meta_set(rein_rundb *db, const char *key, const char *value) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "INSERT INTO meta(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", &s));
    bind_text(s, 1, key);
    bind_text(s, 2, value);
    return step_done(db, s, "writing meta");
}

rein_status rein_rundb_meta_get_int(rein_rundb *db, const char *key, int64_t dflt, int64_t *out) {
    rein_buf b = {0};
    int found;
    rein_status st = rein_rundb_meta_get(db, key, &b, &found);
    *out = (!st && found) ? strtoll(b.data, NULL, 10) : dflt;
    rein_buf_free(&b);
    return st;
}

rein_status rein_rundb_meta_set_int(rein_rundb *db, const char *key, int64_t v) {
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)v);
    return rein_rundb_meta_set(db, key, t);
}

rein_status rein_rundb_add_prompt(rein_rundb *db, const rein_prompt_row *r, int64_t *id) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "INSERT INTO prompts(kind, source, topic, round, text, kept, reason, "
                         "detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?)", &s));
    bind_text(s, 1, r->kind);
    bind_text(s, 2, r->source);
    bind_text(s, 3, r->topic);
    sqlite3_bind_int64(s, 4, r->round);
    bind_text(s, 5, r->text);
    sqlite3_bind_int(s, 6, r->kept);
    bind_text(s, 7, r->reason);
    bind_text(s, 8, r->detail);
    REIN_TRY(step_done(db, s, "adding a prompt"));
    if (id) *id = sqlite3_last_insert_rowid(db->db);
    return REIN_OK;
}

static rein_status each_prompt(rein_rundb *db, sqlite3_stmt *s, rein_prompt_fn fn, void *ud) {
    rein_status st = REIN_OK;
    int rc;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        rein_prompt_row r = {0};
        r.id = sqlite3_column_int64(s, 0);
        r.kind = col_text(s, 1);
        r.source = col_text(s, 2);
        r.topic = col_text(s, 3);
        r.round = sqlite3_column_int64(s, 4);
        r.text = col_text(s, 5);
        r.kept = sqlite3_column_int(s, 6);
        r.reason = col_text(s, 7);
        r.detail = col_text(s, 8);
        st = fn(ud, &r);
    }
    if (!st && rc != SQLITE_DONE) st = db_err(db, "reading prompts");
    sqlite3_finalize(s);
    return st;
}

#define PROMPT_COLS "p.id, p.kind, p.source, p.topic, p.round, p.text, p.kept, p.reason, p.detail"

rein_status rein_rundb_prompts(rein_rundb *db, const char *kind, int kept_only, rein_prompt_fn fn,
                               void *ud) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "SELECT " PROMPT_COLS " FROM prompts p WHERE (?1 IS NULL OR kind = ?1) "
                         "AND (?2 = 0 OR kept = 1) ORDER BY id", &s));
    bind_text(s, 1, kind);
    sqlite3_bind_int(s, 2, kept_only);
    return each_prompt(db, s, fn, ud);
}

rein_status rein_rundb_count_prompts(rein_rundb *db, const char *kind, int kept_only, int64_t *n) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "SELECT count(*) FROM prompts WHERE (?1 IS NULL OR kind = ?1) "
                         "AND (?2 = 0 OR kept = 1)", &s));
    bind_text(s, 1, kind);
    sqlite3_bind_int(s, 2, kept_only);
    rein_status st = sqlite3_step(s) == SQLITE_ROW ? REIN_OK : db_err(db, "counting prompts");
    *n = st ? 0 : sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return st;
}

rein_status rein_rundb_pending(rein_rundb *db, const char *stage, rein_prompt_fn fn, void *ud) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "SELECT " PROMPT_COLS " FROM prompts p WHERE p.kept = 1 AND p.kind IN "
                         "('instruction', 'redteam') AND NOT EXISTS (SELECT 1 FROM answers a "
                         "WHERE a.prompt = p.id AND a.stage = ?1) AND (?1 <> 'clone' OR EXISTS "
                         "(SELECT 1 FROM answers b WHERE b.prompt = p.id AND b.stage = 'answer' "
                         "AND b.kept = 1)) ORDER BY p.id", &s));
    bind_text(s, 1, stage);
    return each_prompt(db, s, fn, ud);
}

rein_status rein_rundb_add_answer(rein_rundb *db, const rein_answer_row *r) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "INSERT INTO answers(prompt, stage, raw, thoughts, answer, n_tokens, "
                         "ending, kept, reason, detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", &s));
    sqlite3_bind_int64(s, 1, r->prompt);
    bind_text(s, 2, r->stage);
    bind_text(s, 3, r->raw);
    bind_text(s, 4, r->thoughts);
    bind_text(s, 5, r->answer);
    sqlite3_bind_int(s, 6, r->n_tokens);
    bind_text(s, 7, r->ending);
    sqlite3_bind_int(s, 8, r->kept);
    bind_text(s, 9, r->reason);
    bind_text(s, 10, r->detail);
    return step_done(db, s, "adding an answer");
}

rein_status rein_rundb_answers(rein_rundb *db, const char *stage, int kept_only, rein_answer_fn fn,
                               void *ud) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "SELECT a.id, a.prompt, p.text, a.stage, a.raw, a.thoughts, a.answer, "
                         "a.ending, a.n_tokens, a.kept, a.reason, a.detail FROM answers a JOIN "
                         "prompts p ON p.id = a.prompt WHERE a.stage = ?1 AND (?2 = 0 OR a.kept = 1) "
                         "ORDER BY a.prompt", &s));
    bind_text(s, 1, stage);
    sqlite3_bind_int(s, 2, kept_only);
    rein_status st = REIN_OK;
    int rc;
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        rein_answer_row r = {0};
        r.id = sqlite3_column_int64(s, 0);
        r.prompt = sqlite3_column_int64(s, 1);
        r.prompt_text = col_text(s, 2);
        r.stage = col_text(s, 3);
        r.raw = col_text(s, 4);
        r.thoughts = col_text(s, 5);
        r.answer = col_text(s, 6);
        r.ending = col_text(s, 7);
        r.n_tokens = sqlite3_column_int(s, 8);
        r.kept = sqlite3_column_int(s, 9);
        r.reason = col_text(s, 10);
        r.detail = col_text(s, 11);
        st = fn(ud, &r);
    }
    if (!st && rc != SQLITE_DONE) st = db_err(db, "reading answers");
    sqlite3_finalize(s);
    return st;
}

rein_status rein_rundb_stage_done(rein_rundb *db, const char *name, int *done) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "SELECT status FROM stages WHERE name = ?", &s));
    bind_text(s, 1, name);
    *done = 0;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *done = col_text(s, 0) && !strcmp(col_text(s, 0), "done");
    rein_status st = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? REIN_OK : db_err(db, "reading stages");
    sqlite3_finalize(s);
    return st;
}

rein_status rein_rundb_stage_set(rein_rundb *db, const char *name, const char *status,
                                 double seconds, const char *info) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, "INSERT INTO stages(name, status, seconds, info) VALUES(?1, ?2, ?3, ?4) "
                         "ON CONFLICT(name) DO UPDATE SET status = ?2, "
                         "seconds = coalesce(stages.seconds, 0) + ?3, info = ?4", &s));
    bind_text(s, 1, name);
    bind_text(s, 2, status);
    sqlite3_bind_double(s, 3, seconds);
    bind_text(s, 4, info);
    return step_done(db, s, "writing stages");
}

/* Append the rows of a two-or-more-column query as Markdown table rows. */
static rein_status table_rows(rein_rundb *db, const char *sql, rein_buf *md) {
    sqlite3_stmt *s;
    REIN_TRY(prepare(db, sql, &s));
    rein_status st = REIN_OK;
    int rc, nc = sqlite3_column_count(s);
    while (!st && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        st = rein_buf_append(md, "|", 1);
        for (int i = 0; i < nc && !st; i++) {
            const char *t = col_text(s, i);
            st = rein_buf_appendf(md, " %s |", t ? t : "");
        }
        if (!st) st = rein_buf_append(md, "\n", 1);
    }
    if (!st && rc != SQLITE_DONE) st = db_err(db, "summarising");
    sqlite3_finalize(s);
    return st;
}

rein_status rein_rundb_summary(rein_rundb *db, rein_buf *md) {
    REIN_TRY(rein_buf_appendf(md, "| stage | status | seconds | notes |\n| --- | --- | ---: | --- |\n"));
    REIN_TRY(table_rows(db, "SELECT name, status, printf('%.0f', seconds), coalesce(info, '') "
                            "FROM stages ORDER BY rowid", md));
    REIN_TRY(rein_buf_appendf(md, "\n| items | generated | kept | dropped |\n| --- | ---: | ---: | ---: |\n"));
    REIN_TRY(table_rows(db, "SELECT kind, count(*), sum(kept), count(*) - sum(kept) FROM prompts "
                            "GROUP BY kind UNION ALL SELECT 'answers (' || stage || ')', count(*), "
                            "sum(kept), count(*) - sum(kept) FROM answers GROUP BY stage", md));
    REIN_TRY(rein_buf_appendf(md, "\n| items | dropped because | count |\n| --- | --- | ---: |\n"));
    REIN_TRY(table_rows(db, "SELECT kind, reason, count(*) FROM prompts WHERE kept = 0 GROUP BY 1, 2 "
                            "UNION ALL SELECT 'answers (' || stage || ')', reason, count(*) FROM "
                            "answers WHERE kept = 0 GROUP BY 1, 2 ORDER BY 1, 3 DESC", md));
    return REIN_OK;
}
