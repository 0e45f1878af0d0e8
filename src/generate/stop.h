/* stop.h - stop-string search shared by rein_generate (generate.c) and rein_generate_batch
 * (batch.c), private to src/generate.
 *
 * Text grows a token's bytes at a time; a stop string may begin up to (its length - 1) bytes
 * before the new piece, so each search starts there rather than at the beginning.
 */
#ifndef REIN_GENERATE_STOP_H
#define REIN_GENERATE_STOP_H

#include "rein.h"

/* Where the search for a stop string must start once bytes were appended after text[0..before). */
size_t rein_stop_search_from(size_t before, const char *const *stop, size_t n_stop);

/* The start of the earliest stop string in text[from..len), or -1. */
int64_t rein_stop_find(const char *text, size_t len, size_t from, const char *const *stop,
                       size_t n_stop);

#endif
