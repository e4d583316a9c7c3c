/*
 * meter: the progress bars of the `quiver` commands on stderr (meter.h):
 * the meter of import, export and backup with its drawing thread, and the
 * line and redraw tick that index rebuild's progress shares. Terminal only;
 * nothing here talks to a server.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "meter.h"

double meter_seconds(const meter *m)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - m->t0.tv_sec) + (double)(now.tv_nsec - m->t0.tv_nsec) / 1e9;
}

/* "1.5 MiB", "12 GiB": human bytes into buf. */
static const char *human_bytes(char *buf, size_t len, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return buf;
}

/* Draw the bar; m->mu held. */
static void meter_draw(meter *m)
{
    double secs = meter_seconds(m);
    uint64_t done = atomic_load(&m->done), total = atomic_load(&m->total), count = atomic_load(&m->count);
    double f = total ? (double)done / (double)total : 0;
    if (f > 1) f = 1;
    char tail[128], a[32], b[32], eta[32] = "";
    double rate = secs > 0 ? (double)count / secs : 0;
    if (total && done > m->done0 && done < total && secs > 0.5) {
        double left = secs * (double)(total - done) / (double)(done - m->done0);
        snprintf(eta, sizeof eta, "  ETA %d:%02d", (int)left / 60, (int)left % 60);
    }
    if (m->bytes)
        snprintf(tail, sizeof tail, " %5.1f%%  %s  %s/s%s", 100 * f, human_bytes(a, sizeof a, (double)count),
                 human_bytes(b, sizeof b, rate), eta);
    else
        snprintf(tail, sizeof tail, " %5.1f%%  %" PRIu64 " rows  %.0f rows/s%s", 100 * f, count, rate, eta);
    meter_bar_line(m->label, 8, total ? f : -1, tail);
    m->drawn = 1;
}

void meter_bar_line(const char *label, int label_w, double f, const char *tail)
{
    int cols = 80;
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) cols = ws.ws_col;
    int width = cols - 1 - label_w - 3 - (int)strlen(tail); /* label, " []", tail */
    if (width > 40) width = 40;
    char bar[48];
    if (width >= 5 && f >= 0) {
        int fill = (int)(f * width + 0.5);
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r\033[K%-*.*s [%s]%s", label_w, label_w, label, bar, tail);
    } else {
        fprintf(stderr, "\r\033[K%-*.*s%s", label_w, label_w, label, tail);
    }
    fflush(stderr);
}

int meter_tick_wait(pthread_cond_t *cv, pthread_mutex_t *mu)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 250 * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cv, mu, &t);
}

static void *meter_main(void *arg)
{
    meter *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        meter_tick_wait(&m->cv, &m->mu);
        if (!m->stop) meter_draw(m);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

void meter_start(meter *m, const char *label, int bytes, uint64_t total, uint64_t done0)
{
    m->label = label;
    m->bytes = bytes;
    atomic_store(&m->total, total);
    atomic_store(&m->done, done0);
    atomic_store(&m->count, 0);
    m->done0 = done0;
    m->stop = m->drawn = m->have_thread = 0;
    clock_gettime(CLOCK_MONOTONIC, &m->t0);
    m->tty = isatty(STDERR_FILENO);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (m->tty) m->have_thread = pthread_create(&m->thread, NULL, meter_main, m) == 0;
}

void meter_note(meter *m, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&m->mu);
    if (m->drawn) fputs("\r\033[K", stderr);
    m->drawn = 0;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&m->mu);
}

void meter_end(meter *m)
{
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->have_thread) pthread_join(m->thread, NULL);
    m->have_thread = 0;
    if (m->tty) { /* the final state */
        meter_draw(m);
        fputc('\n', stderr);
    }
    m->drawn = 0;
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
}
