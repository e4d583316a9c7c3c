/*
 * cli: the plumbing under every `quiver` command (see cli.h) — the global
 * options and the one connection they describe, the Ctrl-C thread, exit
 * codes and error messages, a subcommand's option parsing and the small
 * parsers the commands share. It calls only the qvc client (client.h) and
 * jansson; no command, table or file format lives here.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <grpc/status.h>

#include "cli.h"

#define CONNECT_TIMEOUT_MS 5000

/* ----------------------------------------------------------------- globals */
static int g_json;
static const char *g_addr = CLI_DEFAULT_ADDR;
static int g_timeout_ms = 60000;
static qvc_security g_sec; /* --api-key, --tls... */
static qvc *g_conn;
static pthread_mutex_t g_conn_mu = PTHREAD_MUTEX_INITIALIZER;

/* Ctrl-C: a thread waits for SIGINT (blocked everywhere else). It cancels the
 * registered stream, or exits at once when no command asked for cancelling. */
static sigset_t g_sigset;
static pthread_t g_sig_thread;
static int g_have_sig_thread;
static pthread_mutex_t g_sig_mu = PTHREAD_MUTEX_INITIALIZER;
static qvc_stream *g_stream; /* the call Ctrl-C cancels; guarded by g_sig_mu */
static int g_cancel_mode;    /* Ctrl-C cancels instead of exiting; guarded by g_sig_mu */
static atomic_int g_interrupted;

int cli_json(void) { return g_json; }
int cli_timeout_ms(void) { return g_timeout_ms; }
const char *cli_addr(void) { return g_addr; }

/* ------------------------------------------------------------------ Ctrl-C */
static void *sig_main(void *arg)
{
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&g_sigset, &sig) != 0) continue;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_mutex_lock(&g_sig_mu);
        atomic_store(&g_interrupted, 1);
        if (g_stream) qvc_stream_cancel(g_stream);
        int exit_now = !g_cancel_mode;
        pthread_mutex_unlock(&g_sig_mu);
        if (exit_now) {
            static const char msg[] = "\nquiver: interrupted\n";
            if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing to do */
            }
            _exit(EXIT_INTERRUPTED);
        }
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    }
    return NULL;
}

void cli_set_stream(qvc_stream *s)
{
    pthread_mutex_lock(&g_sig_mu);
    g_stream = s;
    if (s && atomic_load(&g_interrupted)) qvc_stream_cancel(s);
    pthread_mutex_unlock(&g_sig_mu);
}

void cli_set_cancel_mode(int on)
{
    pthread_mutex_lock(&g_sig_mu);
    g_cancel_mode = on;
    pthread_mutex_unlock(&g_sig_mu);
}

int cli_interrupted(void) { return atomic_load(&g_interrupted); }

void cli_start(void)
{
    /* block SIGINT before gRPC starts threads: they inherit the mask */
    sigemptyset(&g_sigset);
    sigaddset(&g_sigset, SIGINT);
    pthread_sigmask(SIG_BLOCK, &g_sigset, NULL);
    g_have_sig_thread = pthread_create(&g_sig_thread, NULL, sig_main, NULL) == 0;
}

int cli_finish(int rc)
{
    fflush(stdout);
    cli_set_cancel_mode(1); /* no _exit while the connection closes */
    if (g_have_sig_thread) {
        pthread_cancel(g_sig_thread);
        pthread_join(g_sig_thread, NULL);
        g_have_sig_thread = 0;
    }
    qvc_close(g_conn);
    g_conn = NULL;
    if (rc == EXIT_OK && ferror(stdout)) rc = EXIT_SERVER;
    return rc;
}

/* ----------------------------------------------------------------- errors */
int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("quiver: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'quiver%s%s --help' for usage.\n", cmd[0] ? " " : "", cmd);
    return EXIT_USAGE;
}

static int exit_code_of(int code)
{
    switch (code) {
    case GRPC_STATUS_OK: return EXIT_OK;
    case GRPC_STATUS_UNAVAILABLE: return EXIT_UNAVAILABLE;
    case GRPC_STATUS_NOT_FOUND: return EXIT_NOT_FOUND;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE: return EXIT_REJECTED;
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_PERMISSION_DENIED: return EXIT_DENIED;
    case GRPC_STATUS_CANCELLED:
        return atomic_load(&g_interrupted) ? EXIT_INTERRUPTED : EXIT_SERVER;
    default: return EXIT_SERVER;
    }
}

int cli_report(const qvc_status *st)
{
    fprintf(stderr, "quiver: %s: %s\n", qvc_status_name(st->code),
            st->details[0] ? st->details : "(no message)");
    return exit_code_of(st->code);
}

/* ------------------------------------------------------------ arguments */
void cli_arglist_free(arglist *l)
{
    free(l->a);
    l->a = NULL;
    l->n = 0;
}

int cli_parse_args(int argc, char **argv, const optdef *opts, const char **pos, int maxpos,
                   int *npos, const char *cmd, const char *help)
{
    int only_pos = 0;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(help, stdout);
            return EXIT_OK;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            const optdef *o = NULL;
            for (const optdef *p = opts; p && p->name; p++)
                if (strlen(p->name) == nl && strncmp(p->name, a, nl) == 0) o = p;
            if (!o) return cli_usage_error(cmd, "unknown option '%.*s' for 'quiver %s'", (int)nl, a, cmd);
            if (o->flag) {
                if (eq) return cli_usage_error(cmd, "option %s takes no value", o->name);
                *o->flag = 1;
                continue;
            }
            const char *v;
            if (eq) v = eq + 1;
            else if (i + 1 < argc) v = argv[++i];
            else return cli_usage_error(cmd, "option %s needs a value", o->name);
            if (o->val) {
                *o->val = v;
            } else {
                struct argval *grown = realloc(o->list->a, (o->list->n + 1) * sizeof *grown);
                if (!grown) {
                    fprintf(stderr, "quiver: out of memory\n");
                    return EXIT_SERVER;
                }
                o->list->a = grown;
                o->list->a[o->list->n++] = (struct argval){o->name, v};
            }
            continue;
        }
        if (*npos >= maxpos) return cli_usage_error(cmd, "unexpected argument '%s'", a);
        pos[(*npos)++] = a;
    }
    return -1;
}

int cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s) return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v > max) return -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *s, float *out)
{
    char *end;
    if (!s || !*s) return -1;
    errno = 0;
    float v = strtof(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

int cli_opt_u32(const char *cmd, const char *name, const char *s, uint32_t *out, int *rc)
{
    uint64_t v;
    if (!s) return 0;
    if (cli_parse_u64(s, UINT32_MAX, &v)) {
        *rc = cli_usage_error(cmd, "%s wants a whole number 0..%u, not '%s'", name, UINT32_MAX, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_parse_metric(const char *s, Quiver__V1__Metric *m)
{
    if (!strcasecmp(s, "l2")) *m = QUIVER__V1__METRIC__L2;
    else if (!strcasecmp(s, "ip") || !strcasecmp(s, "inner_product"))
        *m = QUIVER__V1__METRIC__INNER_PRODUCT;
    else if (!strcasecmp(s, "cosine")) *m = QUIVER__V1__METRIC__COSINE;
    else return -1;
    return 0;
}

int cli_parse_ack(const char *s, Quiver__V1__WriteAck *a)
{
    if (!strcasecmp(s, "applied")) *a = QUIVER__V1__WRITE_ACK__ACK_APPLIED;
    else if (!strcasecmp(s, "logged")) *a = QUIVER__V1__WRITE_ACK__ACK_LOGGED;
    else return -1;
    return 0;
}

int cli_fill_spec(const char *cmd, const index_opts *o, Quiver__V1__IndexSpec *spec, int *any)
{
    int rc = EXIT_OK;
    *any = o->kind || o->nlist || o->pq_m || o->pq_nbits || o->refine;
    if (o->kind) spec->kind = (char *)o->kind;
    if (cli_opt_u32(cmd, "--nlist", o->nlist, &spec->nlist, &rc) ||
        cli_opt_u32(cmd, "--pq-m", o->pq_m, &spec->pq_m, &rc) ||
        cli_opt_u32(cmd, "--pq-nbits", o->pq_nbits, &spec->pq_nbits, &rc) ||
        cli_opt_u32(cmd, "--refine", o->refine, &spec->refine, &rc))
        return rc;
    return EXIT_OK;
}

int cli_global_options(int argc, char **argv, char **rest, int *nrest)
{
    int n = 0;
    const char *env = getenv("QUIVER_ADDR");
    if (env && env[0]) g_addr = env;
    g_sec.api_key = getenv("QUIVER_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (i < argc) rest[n++] = argv[i++];
            break;
        }
        if (strcmp(a, "--json") == 0) {
            g_json = 1;
        } else if (strcmp(a, "--addr") == 0 || strncmp(a, "--addr=", 7) == 0) {
            const char *v = a[6] == '=' ? a + 7 : i + 1 < argc ? argv[++i] : NULL;
            if (!v || !v[0]) return cli_usage_error("", "--addr needs HOST:PORT");
            g_addr = v;
        } else if (strcmp(a, "--tls") == 0) {
            g_sec.tls = 1;
        } else if (!strcmp(a, "--api-key") || !strcmp(a, "--tls-ca") || !strcmp(a, "--tls-cert") ||
                   !strcmp(a, "--tls-key") || !strncmp(a, "--api-key=", 10) ||
                   !strncmp(a, "--tls-ca=", 9) || !strncmp(a, "--tls-cert=", 11) ||
                   !strncmp(a, "--tls-key=", 10)) {
            const char *eq = strchr(a, '=');
            size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
            if (!v || !v[0]) return cli_usage_error("", "%.*s needs a value", (int)nl, a);
            if (!strncmp(a, "--api-key", nl)) g_sec.api_key = v;
            else if (!strncmp(a, "--tls-ca", nl)) g_sec.tls_ca = v;
            else if (!strncmp(a, "--tls-cert", nl)) g_sec.tls_cert = v;
            else g_sec.tls_key = v;
        } else if (strcmp(a, "--timeout") == 0 || strncmp(a, "--timeout=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : i + 1 < argc ? argv[++i] : NULL;
            float secs;
            if (!v || cli_parse_float(v, &secs) || !(secs > 0) || secs > 86400)
                return cli_usage_error("", "--timeout wants seconds in (0, 86400], not '%s'", v ? v : "");
            g_timeout_ms = (int)(secs * 1000) > 0 ? (int)(secs * 1000) : 1;
        } else {
            rest[n++] = argv[i];
        }
    }
    *nrest = n;
    if ((g_sec.tls_cert != NULL) != (g_sec.tls_key != NULL))
        return cli_usage_error("", "--tls-cert and --tls-key go together");
    return -1;
}

/* ---------------------------------------------------------- the server */
/* Open and wait for the connection; g_conn_mu held. */
static int connect_server(void)
{
    qvc_status st;
    if (g_conn) return EXIT_OK;
    char err[512] = "";
    int orc = qvc_open_secure(g_addr, 0, &g_sec, &g_conn, err, sizeof err);
    if (orc == GRPC_STATUS_INVALID_ARGUMENT && err[0]) {
        fprintf(stderr, "quiver: %s\n", err);
        return EXIT_USAGE;
    }
    if (orc) {
        fprintf(stderr, "quiver: cannot open a channel to %s\n", g_addr);
        return EXIT_UNAVAILABLE;
    }
    if (qvc_wait_ready(g_conn, CONNECT_TIMEOUT_MS, &st)) {
        cli_report(&st);
        return EXIT_UNAVAILABLE;
    }
    return EXIT_OK;
}

qvc *cli_conn(int *rc)
{
    pthread_mutex_lock(&g_conn_mu);
    *rc = connect_server();
    qvc *c = *rc ? NULL : g_conn;
    pthread_mutex_unlock(&g_conn_mu);
    return c;
}

int cli_call(const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply)
{
    int rc;
    qvc *c = cli_conn(&rc);
    if (!c) return rc;
    qvc_status st;
    if (qvc_unary(c, method, req, desc, reply, &st, g_timeout_ms)) return cli_report(&st);
    return EXIT_OK;
}

/* ---------------------------------------------------------- output */
int cli_json_print(json_t *doc)
{
    int rc = EXIT_OK;
    if (!doc || json_dumpf(doc, stdout, JSON_COMPACT) != 0) {
        fprintf(stderr, "quiver: out of memory writing JSON\n");
        rc = EXIT_SERVER;
    } else {
        putchar('\n');
    }
    json_decref(doc);
    return rc;
}
