/*
 * log.c — leveled logging to stderr (see log.h).
 */
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "strait";
static enum log_level log_threshold = LOG_LEVEL_INFO;
static bool log_journal;

static const struct {
	const char *name;
	int syslog_priority;
} log_levels[] = {
	[LOG_LEVEL_DEBUG] = { "debug", 7 },
	[LOG_LEVEL_INFO] = { "info", 6 },
	[LOG_LEVEL_NOTICE] = { "notice", 5 },
	[LOG_LEVEL_WARNING] = { "warning", 4 },
	[LOG_LEVEL_ERROR] = { "error", 3 },
	[LOG_LEVEL_FATAL] = { "fatal", 2 },
};

void log_init(const char *program)
{
	log_program = program;
	/* systemd sets JOURNAL_STREAM when stderr is connected to the journal. */
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

enum log_level log_get_level(void)
{
	return log_threshold;
}

bool log_parse_level(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
		if (i != LOG_LEVEL_FATAL && strcmp(name, log_levels[i].name) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	if (strcmp(name, "warn") == 0) {
		*out = LOG_LEVEL_WARNING;
		return true;
	}
	return false;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char text[2048];

	if (level < log_threshold)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);

	if (log_journal) {
		fprintf(stderr, "<%d>%s: %s\n", log_levels[level].syslog_priority,
			log_levels[level].name, text);
	} else {
		struct timeval tv;
		struct tm tm;
		char stamp[32];

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld %s[%ld] %s: %s\n", stamp, (long)tv.tv_usec / 1000,
			log_program, (long)getpid(), log_levels[level].name, text);
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}
