/*
 * meter: progress on stderr for the `quiver` commands that run long — a
 * bar redrawn in place on a terminal (import, export, backup through a meter;
 * index rebuild draws its own from the server's updates with meter_bar_line
 * and meter_tick_wait). Not for output on stdout, nor for anything but a
 * terminal: off a terminal a meter stays silent and the command prints one
 * summary line.
 *
 * Caveats: a meter's counters are atomics any thread may set; meter_start
 * and meter_end belong to the thread that runs the command.
 */
#ifndef QUIVER_TOOLS_METER_H
#define QUIVER_TOOLS_METER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* A progress meter: on a terminal a bar redrawn four times a second by a
 * thread of its own (fraction, count, rate, ETA); nothing otherwise. */
typedef struct meter {
    const char *label; /* "import" */
    int bytes;         /* count is bytes (rate in MiB/s), not rows */
    atomic_uint_fast64_t done, total; /* the fraction: done/total (any unit) */
    atomic_uint_fast64_t count;       /* rows or bytes so far, for the rate */
    uint64_t done0;                   /* done when the run started (resume) */
    struct timespec t0;
    int tty;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int have_thread, stop, drawn;
} meter;

/* Start m: its clock, and on a terminal its drawing thread.
 * [in] label  shown before the bar (a static string: kept, not copied).
 * [in] bytes  1: count is bytes; 0: rows.
 * [in] total, done0  the fraction's whole and where this run starts in it. */
void meter_start(meter *m, const char *label, int bytes, uint64_t total, uint64_t done0);

/* Print a line on stderr (e.g. a bad row) without tearing the bar. */
void meter_note(meter *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Seconds since meter_start. */
double meter_seconds(const meter *m);

/* Stop redrawing, draw the final state and end the bar's line. */
void meter_end(meter *m);

/* One progress line on stderr, redrawn in place: label (padded to label_w),
 * a bar of fraction f (f < 0: no bar) sized to the terminal, then tail. */
void meter_bar_line(const char *label, int label_w, double f, const char *tail);

/* Wait on cv (mu held) until signalled or a redraw is due (250 ms).
 * Returns pthread_cond_timedwait's result. */
int meter_tick_wait(pthread_cond_t *cv, pthread_mutex_t *mu);

#endif
