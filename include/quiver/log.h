/*
 * One-line logging to stderr: "2026-11-28T19:40:01Z quiverd[pid] LEVEL message
 * key=value...", or with qv_log_set_json(1) one JSON object per line:
 * {"time":"2026-11-28T19:40:01.123Z","level":"info","message":"...","pid":N,
 *  "fields":{"key":"value"}}. Thread-safe (one fprintf per line). Not for
 * per-request tracing.
 */
#ifndef QUIVER_LOG_H
#define QUIVER_LOG_H

enum { QV_LOG_ERROR = 0, QV_LOG_WARN = 1, QV_LOG_INFO = 2, QV_LOG_DEBUG = 3 };

/* Lines above this level are dropped (default QV_LOG_INFO). */
void qv_log_set_level(int level);
void qv_log_set_json(int on);
void qv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* With fields: kv is key, value, key, value..., NULL. */
void qv_log_kv(int level, const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define qv_error(...) qv_log(QV_LOG_ERROR, __VA_ARGS__)
#define qv_warn(...) qv_log(QV_LOG_WARN, __VA_ARGS__)
#define qv_info(...) qv_log(QV_LOG_INFO, __VA_ARGS__)
#define qv_debug(...) qv_log(QV_LOG_DEBUG, __VA_ARGS__)

#endif
