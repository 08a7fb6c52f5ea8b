/*
 * _dl_find_object for musl-linked aarch64 module binaries.
 *
 * The aarch64 builds take std's unwinder from the cross gcc's libgcc_eh.a (Debian's
 * gcc-aarch64-linux-gnu). That archive is built for glibc >= 2.35, whose unwinder finds the
 * .eh_frame of a code address with _dl_find_object; musl has no such function (it has
 * dl_iterate_phdr, which older libgcc used). This is _dl_find_object on top of
 * dl_iterate_phdr: the loaded object whose PT_LOAD segments hold the address, and its
 * PT_GNU_EH_FRAME. Our binaries are static, so there is one object. Only backtraces walk the
 * stack (panics abort), so this runs at most when a backtrace is asked for.
 *
 * The struct is glibc's for aarch64 (DLFO_STRUCT_HAS_EH_DBASE and _EH_COUNT are 0 there).
 */
#define _GNU_SOURCE
#include <link.h>
#include <stddef.h>
#include <stdint.h>

struct dl_find_object {
    unsigned long long dlfo_flags;
    void *dlfo_map_start;
    void *dlfo_map_end;
    void *dlfo_link_map;
    void *dlfo_eh_frame;
    unsigned long long dlfo_reserved[7];
};

int _dl_find_object(void *pc, struct dl_find_object *result);

struct search {
    uintptr_t pc;
    struct dl_find_object *result;
};

static int visit(struct dl_phdr_info *info, size_t size, void *data)
{
    struct search *s = data;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    void *eh_frame = NULL;
    int hit = 0;

    (void)size;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + p->p_vaddr;
        if (p->p_type == PT_LOAD) {
            uintptr_t end = start + p->p_memsz;
            if (s->pc >= start && s->pc < end)
                hit = 1;
            if (start < lo)
                lo = start;
            if (end > hi)
                hi = end;
        } else if (p->p_type == PT_GNU_EH_FRAME) {
            eh_frame = (void *)start;
        }
    }
    if (!hit)
        return 0;
    s->result->dlfo_flags = 0;
    s->result->dlfo_map_start = (void *)lo;
    s->result->dlfo_map_end = (void *)hi;
    s->result->dlfo_link_map = NULL;
    s->result->dlfo_eh_frame = eh_frame;
    return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *result)
{
    struct search s = { (uintptr_t)pc, result };
    return dl_iterate_phdr(visit, &s) ? 0 : -1;
}
