/* alloc.c - the one allocation hook, and the growable buffers built on it.
 *
 * Every byte rein allocates passes through `hook`, so a test can count allocations or make the
 * n-th one fail and check that nothing crashes or leaks.
 */
#include "base/base.h"

#include <stdarg.h>
#include <string.h>

static void *default_realloc(void *ud, void *ptr, size_t size) {
    (void)ud;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, size);
}

static rein_realloc_fn hook = default_realloc;
static void *hook_ud;

void rein_set_allocator(rein_realloc_fn fn, void *ud) {
    hook = fn ? fn : default_realloc;
    hook_ud = fn ? ud : NULL;
}

void *rein_malloc(size_t size) {
    void *p = hook(hook_ud, NULL, size ? size : 1);
    if (!p) rein_error(REIN_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void *rein_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        rein_error(REIN_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = rein_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *rein_realloc(void *ptr, size_t size) {
    void *p = hook(hook_ud, ptr, size ? size : 1);
    if (!p) rein_error(REIN_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return p;
}

void rein_free(void *ptr) {
    if (ptr) hook(hook_ud, ptr, 0);
}

/* Aligned blocks: over-allocate, and keep the hook's pointer just before the aligned address. */
void *rein_malloc_aligned(size_t size, size_t alignment) {
    REIN_ASSERT(alignment >= sizeof(void *) && alignment <= 4096 &&
                (alignment & (alignment - 1)) == 0);
    if (size > SIZE_MAX - alignment - sizeof(void *)) {
        rein_error(REIN_ERR_NOMEM, "allocation of %zu bytes overflows", size);
        return NULL;
    }
    char *raw = rein_malloc(size + alignment + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t a = ((uintptr_t)raw + sizeof(void *) + alignment - 1) & ~(uintptr_t)(alignment - 1);
    ((void **)a)[-1] = raw;
    return (void *)a;
}

void rein_free_aligned(void *ptr) {
    if (ptr) rein_free(((void **)ptr)[-1]);
}

char *rein_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = rein_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

rein_status rein_buf_reserve(rein_buf *b, size_t cap) {
    if (cap <= b->cap) return REIN_OK;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < cap) {
        if (ncap > SIZE_MAX / 2) return rein_error(REIN_ERR_NOMEM, "buffer of %zu bytes", cap);
        ncap *= 2;
    }
    char *p = rein_realloc(b->data, ncap);
    if (!p) return REIN_ERR_NOMEM;
    b->data = p;
    b->cap = ncap;
    return REIN_OK;
}

rein_status rein_buf_append(rein_buf *b, const void *data, size_t len) {
    if (len > SIZE_MAX - b->len - 1) return rein_error(REIN_ERR_NOMEM, "buffer overflow");
    REIN_TRY(rein_buf_reserve(b, b->len + len + 1));
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return REIN_OK;
}

rein_status rein_buf_appendf(rein_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return rein_error(REIN_ERR_INVALID, "bad format string");
    }
    rein_status st = rein_buf_reserve(b, b->len + (size_t)n + 1);
    if (st == REIN_OK) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    return st;
}

void rein_buf_clear(rein_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void rein_buf_free(rein_buf *b) {
    rein_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

rein_status rein_tokens_push(rein_tokens *t, int32_t id) {
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        int32_t *p = rein_realloc(t->ids, ncap * sizeof *p);
        if (!p) return REIN_ERR_NOMEM;
        t->ids = p;
        t->cap = ncap;
    }
    t->ids[t->n++] = id;
    return REIN_OK;
}

void rein_tokens_free(rein_tokens *t) {
    rein_free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}
