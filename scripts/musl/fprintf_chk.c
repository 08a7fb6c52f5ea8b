/*
 * __fprintf_chk for musl-linked module binaries.
 *
 * The release binaries link LLVM's libunwind from Debian's libunwind-16-dev (std's unwinder
 * for backtraces; musl has none of its own). Debian compiles that archive against glibc with
 * _FORTIFY_SOURCE, so its debug logging calls glibc's fortified __fprintf_chk, which musl does
 * not provide. This is the same function without the glibc-internal format checks: the flag
 * only asks glibc to reject %n in writable format strings, and libunwind's formats are literals.
 */
#include <stdarg.h>
#include <stdio.h>

int __fprintf_chk(FILE *stream, int flag, const char *format, ...);

int __fprintf_chk(FILE *stream, int flag, const char *format, ...)
{
    va_list ap;
    int n;

    (void)flag;
    va_start(ap, format);
    n = vfprintf(stream, format, ap);
    va_end(ap);
    return n;
}
