/*
 * wg_userspace.c — the userspace WireGuard implementation's process
 * (see wg_userspace.h).
 */
#include "tunnel/wg_userspace.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <linux/close_range.h>

#include "common/json.h"
#include "common/log.h"
#include "tunnel/uapi.h"

#define WG_USERSPACE_DEFAULT "wireguard-go"
#define WG_USERSPACE_ENV_PREFER "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1"
/* A child that lived shorter than this counts as failing: back off. */
#define WG_USERSPACE_MIN_UPTIME_MS 10000
#define WG_USERSPACE_MAX_BACKOFF_MS 30000
#define WG_USERSPACE_STOP_TIMEOUT_MS 3000

extern char **environ;

enum wg_userspace_state {
	WG_US_STARTING,       /* child started, socket not answering yet */
	WG_US_RUNNING,        /* our child serves the socket */
	WG_US_ADOPTED,        /* another process serves the socket */
	WG_US_WAITING,        /* child gone; restart after a backoff */
};

struct wg_userspace {
	struct event_base *base;
	char ifname[WGDEV_IFNAMSIZ];
	const char *program;
	bool keep_on_exit;
	enum wg_userspace_state state;
	pid_t pid;                   /* our child, 0 when none */
	int64_t started_ms;          /* when the child was started */
	unsigned failures;           /* consecutive short-lived children */
	unsigned restarts;
	struct event *sigchld;
	struct event *timer;
	int out_fd;                  /* the child's stdout and stderr, or -1 */
	pid_t out_pid;               /* whose output it is */
	struct event *out_ev;
	char line[512];              /* a partial output line */
	size_t line_len;
	wg_userspace_ready_cb ready;
	void *arg;
};

static const char *wg_userspace_state_name(enum wg_userspace_state s)
{
	switch (s) {
	case WG_US_STARTING: return "starting";
	case WG_US_RUNNING: return "running";
	case WG_US_ADOPTED: return "adopted";
	case WG_US_WAITING: return "waiting to restart";
	}
	return "unknown";
}

static int64_t wg_userspace_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wg_userspace_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void wg_userspace_arm(struct wg_userspace *u, long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	if (u->timer)
		evtimer_add(u->timer, &tv);
}

/* The one place the state changes; every transition is logged with its reason. */
static void wg_userspace_set_state(struct wg_userspace *u, enum wg_userspace_state s,
		const char *reason)
{
	if (u->state == s)
		return;
	log_msg(s == WG_US_WAITING ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO,
		"userspace WireGuard for interface \"%s\": %s -> %s (%s)", u->ifname,
		wg_userspace_state_name(u->state), wg_userspace_state_name(s), reason);
	u->state = s;
}

/* Environment of the child: ours plus the variable wireguard-go asks for. */
static char **wg_userspace_env(void)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=", 45) != 0)
			env[k++] = environ[i];
	env[k++] = (char *)WG_USERSPACE_ENV_PREFER;
	env[k] = NULL;
	return env;
}

/*
 * The child's output goes to our log, line by line and prefixed with its pid,
 * so that journald keeps one stream. wireguard-go prints only errors by
 * default, plus a banner (box-drawing lines) that is logged at debug level.
 */
static void wg_userspace_log_line(struct wg_userspace *u, const char *line)
{
	bool banner = line[0] == '\0' || strstr(line, "\xe2\x94\x82") || strstr(line, "\xe2\x94\x8c") ||
		      strstr(line, "\xe2\x94\x94");

	log_msg(banner ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "%s[%d]: %s", u->program,
		(int)u->out_pid, line);
}

static void wg_userspace_flush_line(struct wg_userspace *u)
{
	while (u->line_len && (u->line[u->line_len - 1] == '\r' || u->line[u->line_len - 1] == ' '))
		u->line_len--;
	u->line[u->line_len] = '\0';
	wg_userspace_log_line(u, u->line);
	u->line_len = 0;
}

static void wg_userspace_close_output(struct wg_userspace *u)
{
	if (u->line_len)
		wg_userspace_flush_line(u);
	if (u->out_ev) {
		event_free(u->out_ev);
		u->out_ev = NULL;
	}
	if (u->out_fd >= 0) {
		close(u->out_fd);
		u->out_fd = -1;
	}
}

/* Reads what is there without blocking; closes the pipe at its end. */
static void wg_userspace_read_output(struct wg_userspace *u)
{
	char buf[1024];

	while (u->out_fd >= 0) {
		ssize_t n = read(u->out_fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			wg_userspace_close_output(u);
			return;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				wg_userspace_flush_line(u);
				continue;
			}
			if (u->line_len == sizeof(u->line) - 1)
				wg_userspace_flush_line(u);
			u->line[u->line_len++] = buf[i];
		}
	}
}

static void wg_userspace_on_output(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	wg_userspace_read_output(arg);
}

/* Runs in the child after fork(): async-signal-safe calls, then exec. */
static void wg_userspace_child(const struct wg_userspace *u, char **env, int errfd, int outfd,
		pid_t parent)
{
	static const int reset[] = { SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2 };
	char *argv[4];
	sigset_t none;
	int e, devnull;

	setsid();
	if (!u->keep_on_exit) {
		/* Dies with the daemon if the daemon dies without cleaning up. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
		signal(reset[i], SIG_DFL);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0)
		dup2(devnull, STDIN_FILENO);
	if (outfd >= 0) {
		dup2(outfd, STDOUT_FILENO);
		dup2(outfd, STDERR_FILENO);
	} else if (devnull >= 0) {
		dup2(devnull, STDOUT_FILENO);
	}
	/* Every inherited descriptor except stdio closes on exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		/* Old kernels: nothing better to do than go on. */
	}
	argv[0] = (char *)u->program;
	argv[1] = (char *)"-f";
	argv[2] = (char *)u->ifname;
	argv[3] = NULL;
	execvpe(u->program, argv, env);
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0) {
		/* The parent will see the exit status instead. */
	}
	_exit(127);
}

/* Starts the child; false with a message when it could not be executed. */
static bool wg_userspace_spawn(struct wg_userspace *u, char *err, size_t errlen)
{
	char **env = wg_userspace_env();
	pid_t parent = getpid(), pid;
	int pipefd[2], outfd[2], e = 0;
	ssize_t n;

	if (!env) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	wg_userspace_close_output(u);
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "could not create pipe: %s", strerror(errno));
		free(env);
		return false;
	}
	/*
	 * Its output comes to us through a pipe, except for a child that will
	 * outlive us (keep_on_exit): it would die of SIGPIPE writing to the pipe
	 * once we are gone, so it writes where our own stderr goes.
	 */
	outfd[0] = outfd[1] = -1;
	if (!u->keep_on_exit && pipe2(outfd, O_CLOEXEC) < 0)
		outfd[0] = outfd[1] = -1;
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "could not fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		if (outfd[0] >= 0) {
			close(outfd[0]);
			close(outfd[1]);
		}
		free(env);
		return false;
	}
	if (pid == 0)
		wg_userspace_child(u, env, pipefd[1], outfd[1], parent);
	close(pipefd[1]);
	free(env);
	if (outfd[0] >= 0) {
		close(outfd[1]);
		fcntl(outfd[0], F_SETFL, fcntl(outfd[0], F_GETFL) | O_NONBLOCK);
		u->out_fd = outfd[0];
		u->out_pid = pid;
		u->out_ev = event_new(u->base, u->out_fd, EV_READ | EV_PERSIST,
				      wg_userspace_on_output, u);
		if (!u->out_ev || event_add(u->out_ev, NULL) < 0)
			wg_userspace_close_output(u);
	}
	/* Returns 0 bytes once exec succeeded (the pipe closes on exec). */
	do
		n = read(pipefd[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n == (ssize_t)sizeof(e)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		snprintf(err, errlen, "could not execute \"%s\": %s", u->program, strerror(e));
		return false;
	}
	u->pid = pid;
	u->started_ms = wg_userspace_now_ms();
	log_info("started %s for interface \"%s\" (pid %d)", u->program, u->ifname, (int)pid);
	return true;
}

/* Reaps our child if it is gone. True when it is (no child left). */
static bool wg_userspace_reap(struct wg_userspace *u, int *status)
{
	pid_t r;

	*status = -1;
	if (u->pid <= 0)
		return true;
	do
		r = waitpid(u->pid, status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	/* r < 0 (ECHILD): someone else reaped it; it is gone all the same. */
	u->pid = 0;
	return true;
}

static void wg_userspace_describe_exit(int status, char *buf, size_t len)
{
	if (status == -1)
		snprintf(buf, len, "exited (reaped elsewhere)");
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was terminated by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "stopped");
}

static void wg_userspace_restart_later(struct wg_userspace *u, const char *reason)
{
	int64_t uptime = wg_userspace_now_ms() - u->started_ms;
	long delay = 0;

	if (u->started_ms && uptime < WG_USERSPACE_MIN_UPTIME_MS) {
		u->failures++;
		delay = 1000L << (u->failures > 5 ? 5 : u->failures - 1);
		if (delay > WG_USERSPACE_MAX_BACKOFF_MS)
			delay = WG_USERSPACE_MAX_BACKOFF_MS;
	} else {
		u->failures = 0;
	}
	wg_userspace_set_state(u, WG_US_WAITING, reason);
	wg_userspace_arm(u, delay);
}

static void wg_userspace_check(struct wg_userspace *u)
{
	char reason[160], how[96];
	int status;

	switch (u->state) {
	case WG_US_STARTING:
	case WG_US_RUNNING:
		if (!wg_userspace_reap(u, &status))
			break;
		wg_userspace_describe_exit(status, how, sizeof(how));
		snprintf(reason, sizeof(reason), "%s %s", u->program, how);
		wg_userspace_restart_later(u, reason);
		return;
	case WG_US_ADOPTED:
		if (uapi_probe(u->ifname) == 0)
			break;
		u->started_ms = 0;
		wg_userspace_restart_later(u, "the implementation that served the interface is gone");
		return;
	case WG_US_WAITING:
		return;
	}
}

static void wg_userspace_on_sigchld(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	wg_userspace_check(arg);
}

static void wg_userspace_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct wg_userspace *u = arg;
	char err[256];
	enum wg_userspace_state before = u->state;

	(void)fd;
	(void)what;
	wg_userspace_check(u);
	if (u->state != before)
		return;     /* the check re-armed the timer for the new state */
	switch (u->state) {
	case WG_US_WAITING:
		u->restarts++;
		if (!wg_userspace_spawn(u, err, sizeof(err))) {
			log_error("could not restart userspace WireGuard for interface \"%s\": %s",
				  u->ifname, err);
			u->started_ms = wg_userspace_now_ms();
			wg_userspace_restart_later(u, "start failed");
			return;
		}
		wg_userspace_set_state(u, WG_US_STARTING, "restarted");
		wg_userspace_arm(u, 50);
		return;
	case WG_US_STARTING:
		if (uapi_probe(u->ifname) == 0) {
			wg_userspace_set_state(u, WG_US_RUNNING, "its UAPI socket answers");
			wg_userspace_arm(u, 1000);
			u->ready(u->arg);
			return;
		}
		if (wg_userspace_now_ms() - u->started_ms > WG_USERSPACE_START_TIMEOUT * 1000L) {
			log_error("%s for interface \"%s\" did not open its UAPI socket within %d s; "
				  "killing it", u->program, u->ifname, WG_USERSPACE_START_TIMEOUT);
			kill(u->pid, SIGKILL);
			wg_userspace_arm(u, 50);
			return;
		}
		wg_userspace_arm(u, 50);
		return;
	case WG_US_RUNNING:
	case WG_US_ADOPTED:
		wg_userspace_arm(u, 1000);
		return;
	}
}

/* At start-up only: waits (bounded) for the new child's socket. */
static bool wg_userspace_wait_ready(struct wg_userspace *u, char *err, size_t errlen)
{
	int64_t deadline = wg_userspace_now_ms() + WG_USERSPACE_START_TIMEOUT * 1000L;
	char how[96];
	int status;

	while (wg_userspace_now_ms() < deadline) {
		if (uapi_probe(u->ifname) == 0)
			return true;
		wg_userspace_read_output(u);
		if (wg_userspace_reap(u, &status)) {
			wg_userspace_read_output(u);
			wg_userspace_describe_exit(status, how, sizeof(how));
			snprintf(err, errlen, "%s for interface \"%s\" %s before it opened its UAPI "
				 "socket", u->program, u->ifname, how);
			return false;
		}
		wg_userspace_sleep_ms(20);
	}
	snprintf(err, errlen, "%s for interface \"%s\" did not open its UAPI socket within %d s",
		 u->program, u->ifname, WG_USERSPACE_START_TIMEOUT);
	return false;
}

static void wg_userspace_kill_child(struct wg_userspace *u)
{
	int64_t deadline;
	int status;

	if (u->pid <= 0)
		return;
	kill(u->pid, SIGTERM);
	deadline = wg_userspace_now_ms() + WG_USERSPACE_STOP_TIMEOUT_MS;
	while (!wg_userspace_reap(u, &status)) {
		if (wg_userspace_now_ms() >= deadline) {
			log_warning("%s for interface \"%s\" (pid %d) did not stop within %d ms; "
				    "killing it", u->program, u->ifname, (int)u->pid,
				    WG_USERSPACE_STOP_TIMEOUT_MS);
			kill(u->pid, SIGKILL);
			while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
				;
			u->pid = 0;
			break;
		}
		wg_userspace_sleep_ms(20);
	}
}

struct wg_userspace *wg_userspace_start(struct event_base *base, const char *ifname,
		bool keep_on_exit, wg_userspace_ready_cb ready, void *arg, char *err, size_t errlen)
{
	struct wg_userspace *u;
	const char *program = getenv("WG_QUICK_USERSPACE_IMPLEMENTATION");

	u = calloc(1, sizeof(*u));
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->base = base;
	u->out_fd = -1;
	snprintf(u->ifname, sizeof(u->ifname), "%s", ifname);
	u->program = program && program[0] ? program : WG_USERSPACE_DEFAULT;
	u->keep_on_exit = keep_on_exit;
	u->ready = ready;
	u->arg = arg;
	u->timer = evtimer_new(base, wg_userspace_on_timer, u);
	u->sigchld = evsignal_new(base, SIGCHLD, wg_userspace_on_sigchld, u);
	if (!u->timer || !u->sigchld || evsignal_add(u->sigchld, NULL) < 0) {
		snprintf(err, errlen, "could not set up events for the userspace implementation");
		goto fail;
	}
	if (uapi_probe(ifname) == 0) {
		u->state = WG_US_ADOPTED;
		log_info("interface \"%s\" is already served by a userspace implementation; "
			 "using it and leaving it running at exit", ifname);
	} else {
		if (!wg_userspace_spawn(u, err, errlen))
			goto fail;
		u->state = WG_US_STARTING;
		if (!wg_userspace_wait_ready(u, err, errlen)) {
			wg_userspace_kill_child(u);
			goto fail;
		}
		u->state = WG_US_RUNNING;
	}
	wg_userspace_arm(u, 1000);
	return u;
fail:
	wg_userspace_close_output(u);
	if (u->sigchld)
		event_free(u->sigchld);
	if (u->timer)
		event_free(u->timer);
	free(u);
	return NULL;
}

bool wg_userspace_ready(const struct wg_userspace *u)
{
	return u->state == WG_US_RUNNING || u->state == WG_US_ADOPTED;
}

void wg_userspace_status_json(const struct wg_userspace *u, struct json_out *j)
{
	json_object_begin(j, "userspace");
	json_string(j, "implementation", u->program);
	json_string(j, "state", wg_userspace_state_name(u->state));
	if (u->pid > 0)
		json_int(j, "pid", u->pid);
	else
		json_null(j, "pid");
	json_uint(j, "restarts", u->restarts);
	json_object_end(j);
}

bool wg_userspace_stop(struct wg_userspace *u, bool keep)
{
	bool stopped = false;

	if (!u)
		return false;
	if (u->sigchld)
		event_free(u->sigchld);
	if (u->timer)
		event_free(u->timer);
	if (keep) {
		if (u->pid > 0)
			log_info("leaving %s for interface \"%s\" running (pid %d)", u->program,
				 u->ifname, (int)u->pid);
	} else if (u->pid > 0) {
		log_info("stopping %s for interface \"%s\" (pid %d)", u->program, u->ifname,
			 (int)u->pid);
		wg_userspace_kill_child(u);
		stopped = true;
	}
	/* What it printed while stopping. */
	wg_userspace_read_output(u);
	wg_userspace_close_output(u);
	free(u);
	return stopped;
}
