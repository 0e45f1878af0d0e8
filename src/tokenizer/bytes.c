/* bytes.c - the GPT-2 byte <-> unicode map of byte-level BPE, and a small UTF-8 decoder.
 *
 * A byte-level vocabulary never stores raw bytes: each byte is written as one printable code
 * point, so that a piece like "Ġhello" means " hello". The 188 bytes that are printable Latin-1
 * ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68 are numbered in
 * byte order from U+0100. The map is closed-form, so there is no table to build or share.
 */
#include "tokenizer/tokenizer.h"

static int printable(uint32_t c) {
    return (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
}

uint32_t rein_tok_byte_to_cp(uint8_t b) {
    if (printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;                 /* 33 bytes: 0x00..0x20 */
    if (b >= 0x7f && b <= 0xa0) return 0x121 + (b - 0x7f); /* 34 bytes: 0x7f..0xa0 */
    return 0x143;                                    /* 0xad, the soft hyphen */
}

int rein_tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return printable(cp) ? (int)cp : -1;
    if (cp <= 0x120) return (int)(cp - 0x100);
    if (cp <= 0x142) return (int)(0x7f + cp - 0x121);
    if (cp == 0x143) return 0xad;
    return -1;
}

int rein_tok_byte_encode(uint8_t b, char out[2]) {
    uint32_t cp = rein_tok_byte_to_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

uint32_t rein_tok_utf8_next(const char *s, size_t n, int *len) {
    const unsigned char *u = (const unsigned char *)s;
    uint32_t c = u[0];
    int need;
    uint32_t min;
    if (c < 0x80) {
        *len = 1;
        return c;
    } else if ((c & 0xe0) == 0xc0) {
        need = 1, min = 0x80, c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        need = 2, min = 0x800, c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        need = 3, min = 0x10000, c &= 0x07;
    } else {
        *len = 1;
        return 0xfffd;
    }
    if ((size_t)need >= n) {
        *len = 1;
        return 0xfffd;
    }
    for (int i = 1; i <= need; i++) {
        if ((u[i] & 0xc0) != 0x80) {
            *len = 1;
            return 0xfffd;
        }
        c = (c << 6) | (u[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        *len = 1;
        return 0xfffd;
    }
    *len = need + 1;
    return c;
}

rein_status rein_tok_piece_decode(const char *piece, size_t len, rein_buf *out) {
    size_t i = 0;
    while (i < len) {
        int n;
        uint32_t cp = rein_tok_utf8_next(piece + i, len - i, &n);
        int b = rein_tok_cp_to_byte(cp);
        if (b >= 0) {
            char c = (char)b;
            REIN_TRY(rein_buf_append(out, &c, 1));
        } else {
            REIN_TRY(rein_buf_append(out, piece + i, (size_t)n));
        }
        i += (size_t)n;
    }
    return REIN_OK;
}
