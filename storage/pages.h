/*
 * pages.h: transparent huge pages for the big blocks searches read at random.
 */
#ifndef QV_PAGES_H
#define QV_PAGES_H

#include <stddef.h>

/* Asks for transparent huge pages over the 2 MiB-aligned inside of the block
 * [p, p + len), whose pages may be in use already: they are collapsed into
 * huge pages now (MADV_COLLAPSE, Linux 6.1; older kernels leave it to
 * khugepaged), and pages touched later come as huge pages. A lookup at random
 * then costs a TLB miss per 2 MiB rather than per 4 KiB. Nothing changes when
 * the system's THP mode is `never`, or for blocks under 2 MiB. */
void qv_pages_huge(void *p, size_t len);

/* The same a step of QV_PAGES_STEP bytes at a time (from the block's first
 * 2 MiB boundary): how many steps the block has, and step i of them. */
#define QV_PAGES_STEP ((size_t)64 << 20)
size_t qv_pages_steps(const void *p, size_t len);
void qv_pages_huge_step(void *p, size_t len, size_t i);

#endif
