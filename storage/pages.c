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

#define HUGE ((uintptr_t)2 << 20)

/* The 2 MiB-aligned inside [*a, *e) of [p, p + len); 0 if none. */
static int inside(const void *p, size_t len, uintptr_t *a, uintptr_t *e)
{
    *a = ((uintptr_t)p + HUGE - 1) & ~(HUGE - 1);
    *e = ((uintptr_t)p + len) & ~(HUGE - 1);
    return p && *e > *a;
}

size_t qv_pages_steps(const void *p, size_t len)
{
    uintptr_t a, e;
    return inside(p, len, &a, &e) ? (e - a + QV_PAGES_STEP - 1) / QV_PAGES_STEP : 0;
}

void qv_pages_huge_step(void *p, size_t len, size_t i)
{
    uintptr_t a, e;
    if (!inside(p, len, &a, &e) || i >= (e - a + QV_PAGES_STEP - 1) / QV_PAGES_STEP) return;
    uintptr_t s = a + i * QV_PAGES_STEP, t = e - s > QV_PAGES_STEP ? s + QV_PAGES_STEP : e;
    pthread_once(&thp_once, read_thp_mode);
    if (!thp_never && madvise((void *)s, t - s, MADV_HUGEPAGE) == 0)
        (void)madvise((void *)s, t - s, MADV_COLLAPSE);
}

void qv_pages_huge(void *p, size_t len)
{
    for (size_t i = 0, n = qv_pages_steps(p, len); i < n; i++) qv_pages_huge_step(p, len, i);
}
