/*
 * cli: the plumbing every `quiver` command stands on (cli.c) — the global
 * options (--addr, --json, --timeout, --api-key, --tls...), the one
 * connection, exit codes and error reporting, a subcommand's option parsing,
 * number and metric parsing, Ctrl-C handling and printing one JSON document.
 * It sits below the command files (quiver.c: main, dispatch and the
 * collection, index, search and recommend commands; import.c; transfer.c)
 * and calls none of them. Not a library for other programs.
 *
 * Caveats:
 * - One process, one set of globals: cli_global_options fills them once,
 *   before cli_start; the commands only read them.
 * - cli_conn, cli_call, cli_set_stream, cli_set_cancel_mode and
 *   cli_interrupted may be called from any thread.
 * - Ctrl-C is handled by a thread cli_start starts, with SIGINT blocked in
 *   every other thread (gRPC's included: call cli_start before any
 *   connection is opened).
 */
#ifndef QUIVER_TOOLS_CLI_H
#define QUIVER_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "client.h"
#include "quiver/v1/quiver.pb-c.h"

/* The server address without --addr and $QUIVER_ADDR. */
#define CLI_DEFAULT_ADDR "127.0.0.1:50051"

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

/* ---------------------------------------------------------- the process */

/* Take the global options out of argv (anywhere before a "--"; defaults from
 * $QUIVER_ADDR and $QUIVER_API_KEY).
 * [in]  argc, argv  main's, argv[0] the program.
 * [out] rest        the other arguments in order (argc entries of room; they
 *                   point into argv), *nrest of them.
 * Returns -1 to go on, or an exit code (the usage error printed). */
int cli_global_options(int argc, char **argv, char **rest, int *nrest);

/* Start the Ctrl-C thread (SIGINT blocked in this thread and the threads it
 * starts from now on). By default Ctrl-C exits the process at once (130). */
void cli_start(void);

/* End the process's use of this module: stop the Ctrl-C thread, close the
 * connection, flush stdout. Returns rc, or EXIT_SERVER when rc is EXIT_OK
 * but stdout could not be written. */
int cli_finish(int rc);

int cli_json(void);          /* --json given */
int cli_timeout_ms(void);    /* --timeout in milliseconds */
const char *cli_addr(void);  /* the server address */

/* ---------------------------------------------------------- the server */

/* The connection, opened and made ready (5 s at most) on first use.
 * [out] rc  on NULL: the exit code (the error printed).
 * Returns the connection (closed by cli_finish) or NULL. */
qvc *cli_conn(int *rc);

/* A unary call on cli_conn with the --timeout deadline.
 * [out] reply  on EXIT_OK: the decoded reply of type desc, the caller's to
 *              free with protobuf_c_message_free_unpacked.
 * Returns EXIT_OK, or the exit code of the failure (printed). */
int cli_call(const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply);

/* Print "quiver: STATUS: message" on stderr; returns the exit code of
 * st->code (CANCELLED after Ctrl-C: EXIT_INTERRUPTED). */
int cli_report(const qvc_status *st);

/* Ctrl-C: with cancel mode on it cancels the registered stream instead of
 * exiting (NULL: none) and cli_interrupted turns true. A stream registered
 * after Ctrl-C is cancelled at once. */
void cli_set_cancel_mode(int on);
void cli_set_stream(qvc_stream *s);
int cli_interrupted(void);

/* ---------------------------------------------------------- arguments */

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

/* Parse a subcommand's arguments: "--opt value", "--opt=value" and flags
 * from opts (NULL: none), "--" ending the options.
 * [out] pos   at most maxpos positionals (argv's strings), *npos of them.
 * [in]  cmd   "collections create", for messages; help is printed for -h.
 * Returns -1 to go on, or an exit code (EXIT_OK after --help). Lists filled
 * here are the caller's to release with cli_arglist_free, whatever this
 * returns. */
int cli_parse_args(int argc, char **argv, const optdef *opts, const char **pos, int maxpos,
                   int *npos, const char *cmd, const char *help);

/* Release a list's values (l stays usable, empty). */
void cli_arglist_free(arglist *l);

/* Print "quiver: message" and a pointer to cmd's --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "123" (digits only) -> *out, at most max. Returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* "0.5" (trailing blanks allowed) -> *out. Returns 0 or -1. */
int cli_parse_float(const char *s, float *out);

/* An optional whole-number option 0..UINT32_MAX: s NULL leaves *out alone.
 * Returns 0, or -1 with *rc the usage exit code (printed). */
int cli_opt_u32(const char *cmd, const char *name, const char *s, uint32_t *out, int *rc);

/* "l2" | "ip" | "inner_product" | "cosine" (any case) -> *m. Returns 0 or -1. */
int cli_parse_metric(const char *s, Quiver__V1__Metric *m);

/* "applied" | "logged" (any case) -> *a. Returns 0 or -1. */
int cli_parse_ack(const char *s, Quiver__V1__WriteAck *a);

/* Index options shared by collections create, index rebuild, import --create. */
typedef struct index_opts {
    const char *kind, *nlist, *pq_m, *pq_nbits, *refine;
} index_opts;

/* Fill spec from o (pointers into argv).
 * [out] any  some option was given.
 * Returns EXIT_OK or a usage exit code (the error printed). */
int cli_fill_spec(const char *cmd, const index_opts *o, Quiver__V1__IndexSpec *spec, int *any);

/* ---------------------------------------------------------- output */

/* Print doc as one line on stdout and release it; NULL doc (a failed
 * allocation) prints an error instead. Returns EXIT_OK or EXIT_SERVER. */
int cli_json_print(json_t *doc);

#endif
