/*
 * pages.h: transparent huge pages for the big blocks searches read at random.
 */
#ifndef QV_PAGES_H
#define QV_PAGES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

/* Asks for transparent huge pages over the 2 MiB-aligned inside of the block
 * [p, p + len) (THP mode `madvise` or `always`; with `never` nothing
 * changes). Pages not touched yet come as 2 MiB pages when first touched:
 * call it before filling the block. A lookup at random then costs a TLB miss
 * per 2 MiB rather than per 4 KiB. Smaller blocks are left alone. */
static inline void qv_advise_huge(void *p, size_t len)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~(huge - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
}

#endif
