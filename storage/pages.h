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

#endif
