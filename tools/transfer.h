/*
 * transfer: the `quiver` commands that move data in bulk — import (import.c:
 * files to Items/Import streams, pipelined and resumable), export and backup
 * (transfer.c: Items/Scan to a file, Admin/Backup to an archive). File
 * formats are in formats.h; the shared CLI plumbing in cli.h.
 */
#ifndef QUIVER_TOOLS_TRANSFER_H
#define QUIVER_TOOLS_TRANSFER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Each takes the arguments after the command's name and returns an exit code
 * (cli.h). */
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_backup(int argc, char **argv);

/* ---------------------------------------- shared by import.c, transfer.c */

/* A progress meter on stderr: on a terminal a bar redrawn in place four
 * times a second by a thread of its own (fraction, count, rate, ETA);
 * nothing otherwise (the command prints one summary line at the end). The
 * counters are atomics any thread may set. */
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

void meter_start(meter *m, const char *label, int bytes, uint64_t total, uint64_t done0);
/* Print a line (e.g. a bad row) without tearing the bar. */
void meter_note(meter *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Seconds since meter_start. */
double meter_seconds(const meter *m);
/* Stop redrawing and end the bar's line. */
void meter_end(meter *m);

/* One progress line on stderr, redrawn in place: label (padded to label_w),
 * a bar of fraction f (f < 0: no bar) sized to the terminal, then tail. */
void bar_line(const char *label, int label_w, double f, const char *tail);
/* Wait on cv (mu held) until signalled or a redraw is due (250 ms). */
int bar_tick_wait(pthread_cond_t *cv, pthread_mutex_t *mu);

/* Durable replace: fsync the directory holding path (after a rename into
 * it). Returns 0 or -1 with errno. */
int fsync_dir_of(const char *path);

#endif
