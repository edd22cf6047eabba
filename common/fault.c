/*
 * fault.c — named fault points (see fault.h).
 *
 * The table is parsed once, at the first hit, from STRAIT_FAULTS. Hits may
 * come from the event loop and from helper threads (the initial sync's
 * copier), so counting is under a mutex; the action runs outside it.
 */
#include "common/fault.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const fault_points[] = {
	"sink.batch_received",       /* a BATCH decoded at the sink, before the apply has it */
	"sink.before_apply",         /* a source transaction's Begin, before its changes go out */
	"sink.target_committed",     /* the target COMMIT succeeded, before committed() and the ACK */
	"sink.ack_sent",             /* an ACK written to the link */
	"sink.sync_chunk",           /* an initial-sync chunk received, before it is loaded */
	"source.ack_received",       /* an ACK read, before the spool releases what it covers */
	"source.spool_append",       /* inside spool_append(), before the record is written */
	"source.spool_fsync",        /* inside spool_sync(), before fsync */
	"source.slot_confirm",       /* before the slot is told a new confirmed position */
	"source.sync_chunk",         /* an initial-sync chunk read, before it is sent */
	"failover.claims_sent",      /* a failover asked the other replicas, before any answer */
	NULL,
};

#ifdef STRAIT_TEST_HOOKS

#define FAULT_MAX 16

enum fault_kind { KIND_CRASH, KIND_STALL, KIND_FAIL };

struct fault {
	char point[64];
	enum fault_kind kind;
	unsigned stall_s;
	unsigned long at;            /* fires at this hit */
	unsigned long hits;
	int fired;
};

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault faults[FAULT_MAX];
static size_t nfaults;
static int parsed;
static const char *unknown;     /* a point, or an item with an unknown action */
static char bad_item[64];

static int known_point(const char *name)
{
	for (size_t i = 0; fault_points[i]; i++)
		if (strcmp(fault_points[i], name) == 0)
			return 1;
	return 0;
}

/* One "POINT=ACTION[@N]" item; one with an unknown action is reported by fault_unknown_point(). */
static void parse_item(char *item)
{
	struct fault f = { .at = 1 };
	char *eq = strchr(item, '='), *at, *colon;

	if (!eq || nfaults == FAULT_MAX)
		return;
	*eq = '\0';
	snprintf(f.point, sizeof(f.point), "%s", item);
	if ((at = strchr(eq + 1, '@')) != NULL) {
		*at = '\0';
		f.at = strtoul(at + 1, NULL, 10);
		if (f.at == 0)
			f.at = 1;
	}
	colon = strchr(eq + 1, ':');
	if (colon)
		*colon = '\0';
	if (strcmp(eq + 1, "crash") == 0) {
		f.kind = KIND_CRASH;
	} else if (strcmp(eq + 1, "stall") == 0) {
		f.kind = KIND_STALL;
		f.stall_s = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 5;
	} else if (strcmp(eq + 1, "fail") == 0) {
		f.kind = KIND_FAIL;
	} else {
		snprintf(bad_item, sizeof(bad_item), "%s", f.point);
		unknown = bad_item;
		return;
	}
	faults[nfaults++] = f;
}

static void parse_env(void)
{
	const char *env = getenv("STRAIT_FAULTS");
	char *copy, *save = NULL;

	parsed = 1;
	if (!env || !*env || !(copy = strdup(env)))
		return;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
		parse_item(item);
	free(copy);
	for (size_t i = 0; i < nfaults; i++)
		if (!known_point(faults[i].point))
			unknown = faults[i].point;
}

const char *fault_unknown_point(void)
{
	const char *u;

	pthread_mutex_lock(&fault_lock);
	if (!parsed)
		parse_env();
	u = unknown;
	pthread_mutex_unlock(&fault_lock);
	return u;
}

enum fault_action fault_hit(const char *point)
{
	struct fault fire = { 0 };
	int firing = 0;

	pthread_mutex_lock(&fault_lock);
	if (!parsed)
		parse_env();
	for (size_t i = 0; i < nfaults; i++) {
		struct fault *f = &faults[i];

		if (f->fired || strcmp(f->point, point) != 0)
			continue;
		if (++f->hits == f->at) {
			f->fired = 1;
			fire = *f;
			firing = 1;
			break;
		}
	}
	pthread_mutex_unlock(&fault_lock);
	if (!firing)
		return FAULT_NONE;
	switch (fire.kind) {
	case KIND_CRASH:
		fprintf(stderr, "fault point %s: crash\n", point);
		fflush(stderr);
		raise(SIGKILL);
		_exit(137);   /* not reached */
	case KIND_STALL:
		fprintf(stderr, "fault point %s: stall %u s\n", point, fire.stall_s);
		fflush(stderr);
		for (struct timespec ts = { fire.stall_s, 0 }; nanosleep(&ts, &ts) != 0;)
			;
		return FAULT_NONE;
	case KIND_FAIL:
		fprintf(stderr, "fault point %s: fail\n", point);
		fflush(stderr);
		return FAULT_FAIL;
	}
	return FAULT_NONE;
}

#endif
