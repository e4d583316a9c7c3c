/*
 * Transparent huge pages (pages.h).
 */
#include "pages.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; glibc 2.36's headers predate it */
#endif

static int thp_never;
static pthread_once_t thp_once = PTHREAD_ONCE_INIT;

/* MADV_COLLAPSE ignores the THP mode: the administrator's `never` is read
 * here and kept. */
static void read_thp_mode(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char line[128] = "";
    if (!f) {
        thp_never = 1;
        return;
    }
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    thp_never = strstr(line, "[never]") != NULL || !line[0];
}

void qv_pages_huge(void *p, size_t len)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~(huge - 1);
    if (!p || e <= a) return;
    pthread_once(&thp_once, read_thp_mode);
    if (thp_never) return;
    if (madvise((void *)a, e - a, MADV_HUGEPAGE) == 0) (void)madvise((void *)a, e - a, MADV_COLLAPSE);
}
