/*
 * hooks.c — operator programs straitd runs on events (see hooks.h).
 */
#include "gateway/daemon/hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"

#define HOOKS_POLL_MS 100

extern char **environ;

struct hook_run {
	struct hook_run *next;
	char *argv[5];               /* program, role, site, epoch, NULL */
};

struct hooks {
	struct event *poll;
	struct hook_run *queue;      /* the head runs when pid > 0 */
	pid_t pid;
	struct timespec started;
};

static double seconds_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void run_free(struct hook_run *r)
{
	for (size_t i = 0; i < 4; i++)
		free(r->argv[i]);
	free(r);
}

static void hooks_next(struct hooks *h);

/* The head is done (ended, failed to start, or killed): the next one starts. */
static void hooks_done(struct hooks *h)
{
	struct hook_run *r = h->queue;

	h->queue = r->next;
	h->pid = 0;
	run_free(r);
	hooks_next(h);
}

static void hooks_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hooks *h = arg;
	struct hook_run *r = h->queue;
	int status;
	pid_t got;

	(void)fd;
	(void)what;
	got = waitpid(h->pid, &status, WNOHANG);
	if (got == 0 && seconds_since(&h->started) < HOOKS_TIMEOUT_S) {
		event_add(h->poll, &(struct timeval){ 0, HOOKS_POLL_MS * 1000 });
		return;
	}
	if (got == 0) {
		log_warning("hook on_role_change %s %s %s: still running after %d s: killed", r->argv[1],
			    r->argv[2], r->argv[3], HOOKS_TIMEOUT_S);
		kill(h->pid, SIGKILL);
		(void)waitpid(h->pid, &status, 0);
	} else if (got < 0) {
		log_warning("hook on_role_change %s %s %s: %s", r->argv[1], r->argv[2], r->argv[3],
			    strerror(errno));
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		log_notice("hook on_role_change %s %s %s: done in %.2f s", r->argv[1], r->argv[2],
			   r->argv[3], seconds_since(&h->started));
	} else {
		log_warning("hook on_role_change %s %s %s: %s %d after %.2f s", r->argv[1], r->argv[2],
			    r->argv[3], WIFEXITED(status) ? "exited" : "killed by signal",
			    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			    seconds_since(&h->started));
	}
	hooks_done(h);
}

static void hooks_next(struct hooks *h)
{
	posix_spawn_file_actions_t fa;
	struct hook_run *r = h->queue;
	int rc;

	if (!r || h->pid > 0)
		return;
	if (posix_spawn_file_actions_init(&fa) != 0) {
		log_error("hook on_role_change: out of memory");
		hooks_done(h);
		return;
	}
	(void)posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	clock_gettime(CLOCK_MONOTONIC, &h->started);
	rc = posix_spawn(&h->pid, r->argv[0], &fa, NULL, r->argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		log_warning("hook on_role_change: could not run \"%s\": %s", r->argv[0], strerror(rc));
		h->pid = 0;
		hooks_done(h);
		return;
	}
	log_info("hook on_role_change: running %s %s %s %s (pid %d)", r->argv[0], r->argv[1],
		 r->argv[2], r->argv[3], (int)h->pid);
	event_add(h->poll, &(struct timeval){ 0, HOOKS_POLL_MS * 1000 });
}

struct hooks *hooks_new(struct event_base *base)
{
	struct hooks *h = calloc(1, sizeof(*h));

	if (!h || !(h->poll = event_new(base, -1, 0, hooks_poll_cb, h))) {
		free(h);
		return NULL;
	}
	return h;
}

void hooks_free(struct hooks *h)
{
	if (!h)
		return;
	if (h->pid > 0)
		log_info("hook on_role_change (pid %d) is left to finish on its own", (int)h->pid);
	while (h->queue) {
		struct hook_run *r = h->queue;

		if (h->pid <= 0)
			log_warning("hook on_role_change %s %s %s: not run, straitd is stopping", r->argv[1],
				    r->argv[2], r->argv[3]);
		h->pid = 0;
		h->queue = r->next;
		run_free(r);
	}
	event_free(h->poll);
	free(h);
}

void hooks_role_change(struct hooks *h, const char *program, const char *role, const char *site,
		uint64_t epoch)
{
	struct hook_run *r, **tail;
	char num[24];

	if (!h || !program)
		return;
	snprintf(num, sizeof(num), "%" PRIu64, epoch);
	r = calloc(1, sizeof(*r));
	if (!r || !(r->argv[0] = strdup(program)) || !(r->argv[1] = strdup(role)) ||
	    !(r->argv[2] = strdup(site)) || !(r->argv[3] = strdup(num))) {
		log_error("hook on_role_change %s %s %s: out of memory, not run", role, site, num);
		if (r)
			run_free(r);
		return;
	}
	for (tail = &h->queue; *tail; tail = &(*tail)->next)
		;
	*tail = r;
	hooks_next(h);
}
