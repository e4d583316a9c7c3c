/* stderr logging (include/quiver/log.h): text lines or JSON objects (jansson). */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "quiver/log.h"

static int g_level = QV_LOG_INFO;
static int g_json;
static const char *const g_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const g_lower[] = {"error", "warn", "info", "debug"};

void qv_log_set_level(int level) { g_level = level; }
void qv_log_set_json(int on) { g_json = on; }

static void emit(int level, const char *const *kv, const char *msg)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char ts[40], tsm[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    int li = level < 0 ? 0 : level > 3 ? 3 : level;
    if (g_json) {
        snprintf(tsm, sizeof tsm, "%s.%03dZ", ts, (int)(now.tv_nsec / 1000000) % 1000);
        json_t *f = json_object();
        for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2) json_object_set_new(f, kv[i], json_string(kv[i + 1]));
        json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:o}", "time", tsm, "level", g_lower[li], "message",
                              msg, "pid", (int)getpid(), "fields", f);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (line) fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(o);
        return;
    }
    char fields[1024] = "";
    size_t n = 0;
    for (size_t i = 0; kv && kv[i] && kv[i + 1] && n < sizeof fields; i += 2)
        n += (size_t)snprintf(fields + n, sizeof fields - n, " %s=%s", kv[i], kv[i + 1]);
    fprintf(stderr, "%sZ quiverd[%d] %s %s%s\n", ts, (int)getpid(), g_names[li], msg, fields);
}

static void vlog(int level, const char *const *kv, const char *fmt, va_list ap)
{
    if (level > g_level) return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    emit(level, kv, msg);
}

void qv_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void qv_log_kv(int level, const char *const *kv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, kv, fmt, ap);
    va_end(ap);
}
