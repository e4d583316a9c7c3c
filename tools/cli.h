/*
 * cli: what the `quiver` command's main file (quiver.c) shares with the
 * command files beside it (transfer.c: import, export, backup): exit codes,
 * option parsing, error reporting, the connection, Ctrl-C handling and JSON
 * printing. Not a library for other programs.
 *
 * Caveats: everything here runs in one process with the globals of quiver.c
 * (--addr, --json, --timeout, the one connection). cli_conn and the
 * cli_set_* functions may be called from any thread.
 */
#ifndef QUIVER_TOOLS_CLI_H
#define QUIVER_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "client.h"
#include "quiver/v1/quiver.pb-c.h"

/* Exit codes (documented in the top-level usage). */
enum {
    EXIT_OK = 0,
    EXIT_USAGE = 2,
    EXIT_UNAVAILABLE = 3,
    EXIT_NOT_FOUND = 4,
    EXIT_REJECTED = 5,
    EXIT_SERVER = 6,
    EXIT_DENIED = 7, /* UNAUTHENTICATED, PERMISSION_DENIED: no key, or not this one */
    EXIT_INTERRUPTED = 130,
};

/* The values of a repeatable option (or of several options sharing one list,
 * which keeps their order: search's --id and --vector). */
typedef struct arglist {
    size_t n;
    struct argval {
        const char *opt, *val; /* the option's name, its value (argv's) */
    } *a;
} arglist;

typedef struct optdef {
    const char *name;  /* "--k" */
    const char **val;  /* where the value goes (the last one given) */
    int *flag;         /* set to 1 for a flag */
    arglist *list;     /* where each value is appended */
} optdef;
#define OPT_VAL(name, p) {(name), (p), NULL, NULL}
#define OPT_FLAG(name, p) {(name), NULL, (p), NULL}
#define OPT_LIST(name, p) {(name), NULL, NULL, (p)}
#define OPT_END {NULL, NULL, NULL, NULL}

/* Index options shared by collections create, index rebuild, import --create. */
typedef struct index_opts {
    const char *kind, *nlist, *pq_m, *pq_nbits, *refine;
} index_opts;

/* Parse a subcommand's arguments: options from opts, at most maxpos
 * positionals (argv's strings, into pos). help is printed for -h/--help.
 * Returns -1 to go on, or an exit code (0 after --help). */
int cli_parse_args(int argc, char **argv, const optdef *opts, const char **pos, int maxpos,
                   int *npos, const char *cmd, const char *help);

/* Print "quiver: message" and a pointer to cmd's --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "quiver: STATUS: message"; returns the exit code of st->code. */
int cli_report(const qvc_status *st);

/* The exit code of a gRPC status code. */
int cli_exit_code_of(int code);

/* The connection, opened and made ready on first use. On failure prints the
 * error and returns NULL with *rc the exit code. */
qvc *cli_conn(int *rc);

/* A unary call on cli_conn with the --timeout deadline; on error prints it
 * and returns the exit code (0 on success, *reply then the caller's). */
int cli_call(const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply);

int cli_json(void);       /* --json given */
int cli_timeout_ms(void); /* --timeout in milliseconds */

/* "123" -> *out, at most max. Returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* "l2" | "ip" | "inner_product" | "cosine" -> *m. Returns 0 or -1. */
int cli_parse_metric(const char *s, Quiver__V1__Metric *m);
const char *cli_metric_name(Quiver__V1__Metric m);

/* Fill spec from o (pointers into argv); *any: some option was given.
 * Returns 0 or a usage exit code (the error printed). */
int cli_fill_spec(const char *cmd, const index_opts *o, Quiver__V1__IndexSpec *spec, int *any);

/* Ctrl-C: by default it exits the process at once (130). With cancel mode on
 * it cancels the registered stream instead (NULL: none) and cli_interrupted
 * turns true. */
void cli_set_cancel_mode(int on);
void cli_set_stream(qvc_stream *s);
int cli_interrupted(void);

/* Print doc as one line on stdout and release it. Returns an exit code. */
int cli_json_print(json_t *doc);

#endif
