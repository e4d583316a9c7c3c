/*
 * API keys, roles and collection scopes; TLS credentials with reload
 * (server/auth.h). Keys are compared as SHA-256 hashes in constant time
 * (CRYPTO_memcmp over every key), and never logged.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "quiver/log.h"

#define MAX_KEYS 100000
#define MAX_SCOPE 1024

struct auth_key {
    unsigned char hash[32];
    auth_role role;
    char name[128];
    char **colls; /* NULL: every collection */
    size_t ncolls;
};

struct auth_table {
    atomic_int refs;
    auth_key *keys;
    size_t n;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static auth_table *g_table; /* NULL: auth is off */
static _Thread_local const auth_ctx *tls_ctx;

static const char *role_name(auth_role r)
{
    switch (r) {
    case ROLE_READ: return "read";
    case ROLE_WRITE: return "write";
    case ROLE_ADMIN: return "admin";
    default: return "none";
    }
}

static void table_free(auth_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        for (size_t j = 0; j < t->keys[i].ncolls; j++) free(t->keys[i].colls[j]);
        free(t->keys[i].colls);
    }
    free(t->keys);
    free(t);
}

static void table_unref(auth_table *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) table_free(t);
}

static int unhex(const char *s, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char c = (char)tolower((unsigned char)s[2 * i + j]);
            if (c >= '0' && c <= '9') v = v * 16 + (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f') v = v * 16 + (unsigned)(c - 'a' + 10);
            else return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int parse_line(char *line, auth_key *k, char *why, size_t whylen)
{
    char *save = NULL, *tok[5];
    int n = 0;
    for (char *t = strtok_r(line, " \t", &save); t && n < 5; t = strtok_r(NULL, " \t", &save)) tok[n++] = t;
    if (n < 3 || n > 4) {
        snprintf(why, whylen, "want SHA256-HEX ROLE NAME [collections=a,b], found %d fields", n);
        return -1;
    }
    if (strlen(tok[0]) != 64 || unhex(tok[0], k->hash)) {
        snprintf(why, whylen, "the first field is not a SHA-256 in 64 hex digits (quiverd --hash-key "
                 "makes one)");
        return -1;
    }
    if (!strcmp(tok[1], "read")) k->role = ROLE_READ;
    else if (!strcmp(tok[1], "write")) k->role = ROLE_WRITE;
    else if (!strcmp(tok[1], "admin")) k->role = ROLE_ADMIN;
    else {
        snprintf(why, whylen, "role \"%.32s\" is not read, write or admin", tok[1]);
        return -1;
    }
    snprintf(k->name, sizeof k->name, "%s", tok[2]);
    if (n == 4) {
        if (strncmp(tok[3], "collections=", 12) != 0 || !tok[3][12]) {
            snprintf(why, whylen, "the fourth field must be collections=a,b");
            return -1;
        }
        char *s2 = NULL;
        for (char *c = strtok_r(tok[3] + 12, ",", &s2); c; c = strtok_r(NULL, ",", &s2)) {
            if (k->ncolls == MAX_SCOPE) {
                snprintf(why, whylen, "over %d collections", MAX_SCOPE);
                return -1;
            }
            char **nc = realloc(k->colls, (k->ncolls + 1) * sizeof *nc);
            if (!nc || !(nc[k->ncolls] = strdup(c))) {
                if (nc) k->colls = nc;
                snprintf(why, whylen, "out of memory");
                return -1;
            }
            k->colls = nc;
            k->ncolls++;
        }
    }
    return 0;
}

int auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    auth_table *t = calloc(1, sizeof *t);
    char line[8192], why[256];
    int lineno = 0, rc = t ? 0 : -1;
    if (!t) snprintf(err, errlen, "out of memory");
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        if (t->n == MAX_KEYS) {
            snprintf(err, errlen, "%s: over %d keys", path, MAX_KEYS);
            rc = -1;
            break;
        }
        auth_key *nk = realloc(t->keys, (t->n + 1) * sizeof *nk);
        if (!nk) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        t->keys = nk;
        auth_key *k = &t->keys[t->n++];
        memset(k, 0, sizeof *k);
        if (parse_line(p, k, why, sizeof why)) {
            snprintf(err, errlen, "%s line %d: %s", path, lineno, why);
            rc = -1;
            break;
        }
        for (size_t i = 0; i + 1 < t->n && !rc; i++)
            if (!memcmp(t->keys[i].hash, k->hash, 32)) {
                snprintf(err, errlen, "%s line %d: the same key as %s", path, lineno,
                         t->keys[i].name);
                rc = -1;
            }
    }
    fclose(f);
    if (rc) {
        table_free(t);
        return -1;
    }
    atomic_init(&t->refs, 1);
    pthread_mutex_lock(&g_mu);
    auth_table *old = g_table;
    g_table = t;
    pthread_mutex_unlock(&g_mu);
    table_unref(old);
    qv_info("API keys: %zu loaded from %s", t->n, path);
    return 0;
}

auth_role auth_method_role(const char *p)
{
    if (!strncmp(p, "/grpc.health.v1.Health/", 23)) return ROLE_NONE;
    if (!strcmp(p, "/quiver.v1.Items/Upsert") || !strcmp(p, "/quiver.v1.Items/Import") ||
        !strcmp(p, "/quiver.v1.Items/Delete"))
        return ROLE_WRITE;
    if (!strcmp(p, "/quiver.v1.Collections/Create") || !strcmp(p, "/quiver.v1.Collections/Drop") ||
        !strncmp(p, "/quiver.v1.Admin/", 17) || !strncmp(p, "/quiver.peer.", 13))
        return ROLE_ADMIN; /* the calls between a cluster's nodes too */
    return ROLE_READ; /* Search, Get, Scan, Describe, List, reflection */
}

void auth_hash_hex(const char *key, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned mdlen = 0;
    EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL);
    static const char h[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) out[2 * i] = h[md[i] >> 4], out[2 * i + 1] = h[md[i] & 15];
    out[64] = 0;
}

grpc_status_code auth_check(const grpc_metadata_array *md, const char *method, auth_role need,
                            auth_ctx *ctx, char *err, size_t errlen)
{
    ctx->t = NULL;
    ctx->k = NULL;
    if (need == ROLE_NONE) return GRPC_STATUS_OK;
    pthread_mutex_lock(&g_mu);
    auth_table *t = g_table;
    if (t) atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&g_mu);
    if (!t) return GRPC_STATUS_OK;
    const char *key = NULL;
    size_t klen = 0;
    for (size_t i = 0; i < md->count; i++) {
        if (grpc_slice_str_cmp(md->metadata[i].key, "authorization")) continue;
        const char *v = (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
        size_t vl = GRPC_SLICE_LENGTH(md->metadata[i].value);
        if (vl > 7 && !strncasecmp(v, "Bearer ", 7)) {
            key = v + 7;
            klen = vl - 7;
        }
    }
    if (!key) {
        table_unref(t);
        snprintf(err, errlen, "no API key: send the metadata \"authorization: Bearer KEY\"");
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    unsigned char h[32];
    unsigned hl = 0;
    EVP_Digest(key, klen, h, &hl, EVP_sha256(), NULL);
    /* every key compared, in constant time each: no early exit */
    const auth_key *found = NULL;
    for (size_t i = 0; i < t->n; i++) {
        int eq = CRYPTO_memcmp(h, t->keys[i].hash, 32) == 0;
        if (eq) found = &t->keys[i];
    }
    if (!found) {
        table_unref(t);
        snprintf(err, errlen, "unknown API key");
        return GRPC_STATUS_UNAUTHENTICATED;
    }
    if (found->role < need) {
        snprintf(err, errlen, "API key \"%s\" has role %s; %s needs role %s", found->name,
                 role_name(found->role), method, role_name(need));
        table_unref(t);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    ctx->t = t;
    ctx->k = found;
    return GRPC_STATUS_OK;
}

void auth_release(auth_ctx *ctx)
{
    table_unref(ctx->t);
    ctx->t = NULL;
    ctx->k = NULL;
}

void auth_set_current(const auth_ctx *ctx) { tls_ctx = ctx; }
const auth_ctx *auth_current(void) { return tls_ctx; }

int auth_scoped(void) { return tls_ctx && tls_ctx->k && tls_ctx->k->colls; }

int auth_may_use(const char *name, char *err, size_t errlen)
{
    if (!auth_scoped()) return 1;
    const auth_key *k = tls_ctx->k;
    for (size_t i = 0; i < k->ncolls; i++)
        if (!strcmp(k->colls[i], name)) return 1;
    snprintf(err, errlen, "API key \"%s\" may not use collection \"%.128s\": the key is scoped to "
             "%zu collection%s", k->name, name, k->ncolls, k->ncolls == 1 ? "" : "s");
    return 0;
}

/* -------------------------------------------------------------------- TLS */
static struct {
    char *cert, *key, *ca;
    atomic_int reload;
    atomic_int loaded; /* the fetcher runs on gRPC's threads */
} g_tls;

static char *read_all(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 16384;
            char *nb = cap <= (64u << 20) ? realloc(buf, cap) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "%s is too large for a PEM file", path);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* Check the PEM files with OpenSSL so that a bad file is named at start-up
 * (gRPC only fails the handshakes). */
static int check_pem(const char *cert_pem, const char *key_pem, const char *ca_pem, char *err,
                     size_t errlen)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    int rc = 0;
    if (!x) {
        snprintf(err, errlen, "--tls-cert %s holds no PEM certificate", g_tls.cert);
        rc = -1;
    } else if (!pk) {
        snprintf(err, errlen, "--tls-key %s holds no PEM private key", g_tls.key);
        rc = -1;
    } else if (X509_check_private_key(x, pk) != 1) {
        snprintf(err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s",
                 g_tls.key, g_tls.cert);
        rc = -1;
    }
    if (!rc && ca_pem) {
        b = BIO_new_mem_buf(ca_pem, -1);
        X509 *ca = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!ca) {
            snprintf(err, errlen, "--tls-client-ca %s holds no PEM certificate", g_tls.ca);
            rc = -1;
        }
        X509_free(ca);
    }
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

static grpc_ssl_server_certificate_config *load_config(char *err, size_t errlen)
{
    char *cert = read_all(g_tls.cert, err, errlen);
    char *key = cert ? read_all(g_tls.key, err, errlen) : NULL;
    char *ca = key && g_tls.ca ? read_all(g_tls.ca, err, errlen) : NULL;
    grpc_ssl_server_certificate_config *cfg = NULL;
    if (cert && key && (!g_tls.ca || ca) && check_pem(cert, key, ca, err, errlen) == 0) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        /* gRPC's reloading path insists on root certificates even when no
         * client certificate is asked for (unused then): the server's own */
        cfg = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1);
    }
    free(cert);
    free(key);
    free(ca);
    return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch_config(void *ud,
                                                             grpc_ssl_server_certificate_config **cfg)
{
    (void)ud;
    if (atomic_load(&g_tls.loaded) && !atomic_exchange(&g_tls.reload, 0))
        return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    char err[512];
    grpc_ssl_server_certificate_config *c = load_config(err, sizeof err);
    if (!c) {
        qv_error("TLS: %s; the certificates in force stay", err);
        return atomic_load(&g_tls.loaded) ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED
                            : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    }
    if (atomic_exchange(&g_tls.loaded, 1)) qv_info("TLS: certificates re-read");
    *cfg = c;
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

grpc_server_credentials *auth_tls_credentials(const char *cert, const char *key,
                                              const char *client_ca, char *err, size_t errlen)
{
    g_tls.cert = strdup(cert);
    g_tls.key = strdup(key);
    g_tls.ca = client_ca ? strdup(client_ca) : NULL;
    grpc_ssl_server_certificate_config *c = load_config(err, errlen);
    if (!c) return NULL;
    grpc_ssl_server_certificate_config_destroy(c); /* checked; gRPC fetches its own */
    grpc_ssl_server_credentials_options *o = grpc_ssl_server_credentials_create_options_using_config_fetcher(
        client_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                  : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        fetch_config, NULL);
    return grpc_ssl_server_credentials_create_with_options(o);
}

void auth_tls_reload(void) { atomic_store(&g_tls.reload, 1); }
