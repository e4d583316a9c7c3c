/* stderr logging (include/quiver/log.h). */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "quiver/log.h"

static int g_level = QV_LOG_INFO;
static const char *const g_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void qv_log_set_level(int level) { g_level = level; }

void qv_log(int level, const char *fmt, ...)
{
    if (level > g_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s quiverd[%d] %s %s\n", ts, (int)getpid(),
            g_names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}
