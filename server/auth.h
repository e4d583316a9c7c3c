/*
 * API keys with roles (--auth-keys FILE) and TLS credentials (--tls-cert,
 * --tls-key, --tls-client-ca), both re-read on SIGHUP.
 *
 * Key file: one key per line, `SHA256-HEX ROLE NAME [collections=a,b]`; blank
 * lines and lines starting with # are skipped. The file holds hashes, never
 * keys (quiverd --hash-key prints one). Roles: read (Search, Recommend, Get,
 * Scan, Describe, List, reflection), write (read + Upsert, Import, Delete),
 * admin (everything). Health checks need no key.
 *
 * Caveats:
 *  - A call keeps a reference to the key table it was admitted with, so a
 *    reload never frees a key under a running call.
 *  - The collection scope is checked where handlers look collections up
 *    (srv_find_coll, and Collections' own name checks), through the key of
 *    the call the thread is serving (auth_set_current around each handler
 *    step).
 */
#ifndef QUIVERD_AUTH_H
#define QUIVERD_AUTH_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <stddef.h>

typedef enum { ROLE_NONE = 0, ROLE_READ = 1, ROLE_WRITE = 2, ROLE_ADMIN = 3 } auth_role;

typedef struct auth_table auth_table;
typedef struct auth_key auth_key;

/* What a call was admitted with (both NULL when auth is off or not needed). */
typedef struct auth_ctx {
    auth_table *t;
    const auth_key *k;
} auth_ctx;

/* Load (or, on SIGHUP, reload) the key file. On failure the keys in force
 * stay and err says why (file, line). Returns 0 or -1. */
int auth_load(const char *path, char *err, size_t errlen);
/* The role a method needs (ROLE_NONE: open to all). */
auth_role auth_method_role(const char *path);
/* Admit a call needing role from its metadata: 0 with ctx set, or the status
 * (UNAUTHENTICATED, PERMISSION_DENIED) with err naming what is missing. */
grpc_status_code auth_check(const grpc_metadata_array *md, const char *method, auth_role need,
                            auth_ctx *ctx, char *err, size_t errlen);
void auth_release(auth_ctx *ctx);

/* The call this thread serves (NULL: none), for the scope checks below. */
void auth_set_current(const auth_ctx *ctx);
const auth_ctx *auth_current(void);
/* May the current call use collection name? 1, or 0 with err set. */
int auth_may_use(const char *name, char *err, size_t errlen);
/* Is the current call's key scoped to some collections? */
int auth_scoped(void);

/* SHA-256 of key as 64 hex digits into out (quiverd --hash-key). */
void auth_hash_hex(const char *key, size_t len, char out[65]);

/* TLS: server credentials from the files (client_ca NULL: no client
 * certificates), re-read when auth_tls_reload() was called since the last
 * handshake. Returns NULL with err set when the files do not load. */
grpc_server_credentials *auth_tls_credentials(const char *cert, const char *key,
                                              const char *client_ca, char *err, size_t errlen);
void auth_tls_reload(void);

#endif
