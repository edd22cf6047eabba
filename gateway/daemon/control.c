/*
 * control.c — the control socket server and client (see control.h).
 *
 * NOTES
 * Who may talk to the daemon is decided twice: by the socket file's mode and
 * group (the kernel refuses connect() to everyone else), and by the peer's
 * credentials taken at accept (SO_PEERCRED, SO_PEERGROUPS), which hold even
 * when the file's mode was loosened behind the daemon's back. The credentials
 * are those of the connecting process as the kernel recorded them at
 * connect(), so no name service is asked from the event loop; only a kernel
 * without SO_PEERGROUPS makes us fall back to getgrouplist().
 *
 * A refused peer still gets a reply: the request line is read first (so the
 * client has finished writing and reads the reply instead of a reset), then
 * answered with "error" and the reason, and the connection closed.
 */
#include "gateway/daemon/control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/log.h"

struct control_server {
	struct event_base *base;
	struct evconnlistener *listener;
	char *path;
	const struct control_command *commands;
	void *arg;
	struct control_request *pending;   /* requests whose handler has not replied */
	char *group;                       /* control.group, NULL: owner-only */
	gid_t gid;                         /* group's id when group is set */
};

struct control_request {
	struct control_server *srv;
	struct bufferevent *bev;           /* NULL once the client went away */
	bool dispatched;
	bool refused;                      /* the peer may not use the socket */
	struct control_request *next;
	char *line;
	char *argv[CONTROL_MAX_ARGS + 1];
	control_reply_fn reply_fn;         /* a request from elsewhere: its answer goes here */
	void *reply_arg;
};

static void control_unlink_pending(struct control_request *req)
{
	struct control_request **p;

	if (!req->srv)
		return;
	for (p = &req->srv->pending; *p; p = &(*p)->next) {
		if (*p == req) {
			*p = req->next;
			break;
		}
	}
}

static void control_request_free(struct control_request *req)
{
	if (req->bev)
		bufferevent_free(req->bev);
	free(req->line);
	free(req);
}

static void control_flushed_cb(struct bufferevent *bev, void *ctx)
{
	struct control_request *req = ctx;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_request_free(req);
}

static void control_event_cb(struct bufferevent *bev, short what, void *ctx)
{
	struct control_request *req = ctx;

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (req->dispatched) {
		/* The handler still owns req: just forget the connection. */
		bufferevent_free(req->bev);
		req->bev = NULL;
		return;
	}
	control_request_free(req);
}

void control_reply(struct control_request *req, bool ok, const char *body)
{
	struct evbuffer *out;

	control_unlink_pending(req);
	req->dispatched = false;
	if (req->reply_fn) {
		req->reply_fn(req->reply_arg, ok, body);
		control_request_free(req);
		return;
	}
	if (!req->bev) {
		control_request_free(req);
		return;
	}
	out = bufferevent_get_output(req->bev);
	evbuffer_add_printf(out, "%s\n", ok ? "ok" : "error");
	if (body)
		evbuffer_add(out, body, strlen(body));
	bufferevent_disable(req->bev, EV_READ);
	bufferevent_setcb(req->bev, NULL, control_flushed_cb, control_event_cb, req);
	bufferevent_enable(req->bev, EV_WRITE);
}

static void control_refuse(struct control_request *req)
{
	char msg[256];

	if (req->srv->group)
		snprintf(msg, sizeof(msg), "permission denied: only root, straitd's user and members "
			 "of group \"%s\" may use the control socket\n", req->srv->group);
	else
		snprintf(msg, sizeof(msg), "permission denied: only root and straitd's user "
			 "may use the control socket\n");
	control_reply(req, false, msg);
}

static void control_dispatch(struct control_request *req)
{
	const struct control_command *cmd;
	char *save = NULL;
	int argc = 0;

	if (req->refused) {
		control_refuse(req);
		return;
	}

	for (char *w = strtok_r(req->line, "\t", &save); w; w = strtok_r(NULL, "\t", &save)) {
		if (argc == CONTROL_MAX_ARGS) {
			control_reply(req, false, "too many arguments\n");
			return;
		}
		req->argv[argc++] = w;
	}
	req->argv[argc] = NULL;
	if (argc == 0) {
		control_reply(req, false, "empty request\n");
		return;
	}
	for (cmd = req->srv->commands; cmd->name; cmd++) {
		if (strcmp(cmd->name, req->argv[0]) == 0) {
			req->dispatched = true;
			req->next = req->srv->pending;
			req->srv->pending = req;
			cmd->handler(req, argc, req->argv, req->srv->arg);
			return;
		}
	}
	{
		char msg[128];
		snprintf(msg, sizeof(msg), "unknown command \"%.64s\"\n", req->argv[0]);
		control_reply(req, false, msg);
	}
}

struct control_request *control_request_new(int argc, char *const *argv, control_reply_fn fn,
		void *arg)
{
	struct control_request *req;
	size_t len = 0, at = 0;

	if (argc < 1 || argc > CONTROL_MAX_ARGS)
		return NULL;
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	req = calloc(1, sizeof(*req));
	if (!req || !(req->line = malloc(len))) {
		free(req);
		return NULL;
	}
	for (int i = 0; i < argc; i++) {
		req->argv[i] = req->line + at;
		memcpy(req->line + at, argv[i], strlen(argv[i]) + 1);
		at += strlen(argv[i]) + 1;
	}
	req->argv[argc] = NULL;
	req->reply_fn = fn;
	req->reply_arg = arg;
	return req;
}

bool control_request_run(struct control_request *req, const struct control_command *commands,
		void *arg)
{
	int argc = 0;

	while (req->argv[argc])
		argc++;
	for (const struct control_command *cmd = commands; cmd->name; cmd++) {
		if (strcmp(cmd->name, req->argv[0]) == 0) {
			req->dispatched = true;
			cmd->handler(req, argc, req->argv, arg);
			return true;
		}
	}
	return false;
}

void control_request_drop(struct control_request *req)
{
	control_request_free(req);
}

bool control_request_remote(const struct control_request *req)
{
	return req->reply_fn != NULL;
}

static void control_read_cb(struct bufferevent *bev, void *ctx)
{
	struct control_request *req = ctx;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;

	if (req->dispatched)
		return;
	req->line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (!req->line) {
		if (evbuffer_get_length(in) > CONTROL_MAX_REQUEST) {
			log_warning("control socket: request longer than %d bytes, closing",
				    CONTROL_MAX_REQUEST);
			control_request_free(req);
		}
		return;
	}
	bufferevent_disable(bev, EV_READ);
	control_dispatch(req);
}

static bool control_gid_listed(gid_t gid, const gid_t *groups, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/*
 * Whether the process behind fd has gid among its supplementary groups, as
 * the kernel recorded them at connect(). Only when the kernel cannot tell
 * (before Linux 4.13) is the group database asked about the peer's user.
 */
static bool control_peer_has_group(int fd, const struct ucred *cred, gid_t gid)
{
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small);
	struct passwd pw, *res = NULL;
	char buf[4096];
	bool found = false;
	int n;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		return control_gid_listed(gid, groups, len / sizeof(gid_t));
	if (errno == ERANGE) {
		/* More than 64 groups: len now says how much room they need. */
		groups = malloc(len);
		if (groups && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
			found = control_gid_listed(gid, groups, len / sizeof(gid_t));
		free(groups);
		return found;
	}
	if (errno != ENOPROTOOPT)
		return false;
	if (getpwuid_r(cred->uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	groups = malloc(NGROUPS_MAX * sizeof(gid_t));
	n = NGROUPS_MAX;
	if (groups && getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) >= 0)
		found = control_gid_listed(gid, groups, (size_t)n);
	free(groups);
	return found;
}

/* Root, the daemon's own user and, with a group, its members; logs a refusal. */
static bool control_peer_allowed(const struct control_server *srv, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warning("control socket: refused a connection: could not read its credentials: %s",
			    strerror(errno));
		return false;
	}
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	if (srv->group && (cred.gid == srv->gid || control_peer_has_group(fd, &cred, srv->gid)))
		return true;
	if (srv->group)
		log_warning("control socket: refused a connection from uid %u (pid %d): "
			    "not root, straitd's user or a member of group \"%s\"",
			    (unsigned)cred.uid, (int)cred.pid, srv->group);
	else
		log_warning("control socket: refused a connection from uid %u (pid %d): "
			    "not root or straitd's user", (unsigned)cred.uid, (int)cred.pid);
	return false;
}

static void control_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
		struct sockaddr *addr, int socklen, void *arg)
{
	struct control_server *srv = arg;
	struct control_request *req;

	(void)listener;
	(void)addr;
	(void)socklen;
	req = calloc(1, sizeof(*req));
	if (!req) {
		evutil_closesocket(fd);
		return;
	}
	req->srv = srv;
	req->refused = !control_peer_allowed(srv, fd);
	req->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!req->bev) {
		evutil_closesocket(fd);
		free(req);
		return;
	}
	bufferevent_setcb(req->bev, control_read_cb, NULL, control_event_cb, req);
	bufferevent_setwatermark(req->bev, EV_READ, 0, CONTROL_MAX_REQUEST + 1);
	bufferevent_enable(req->bev, EV_READ);
}

static void control_accept_error_cb(struct evconnlistener *listener, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)arg;
	log_warning("control socket: could not accept connection: %s", strerror(err));
	/* Out of descriptors: stop accepting briefly rather than spin. */
	if (err == EMFILE || err == ENFILE)
		evconnlistener_disable(listener);
}

static bool control_fill_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return false;
	strcpy(sun->sun_path, path);
	return true;
}

/* Creates the socket's parent directory (one level) when it is missing. */
static void control_make_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (strlen(path) >= sizeof(dir))
		return;
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		log_warning("could not create directory \"%s\": %s", dir, strerror(errno));
}

/* The id of group; false (logged) when there is no such group. */
static bool control_lookup_group(const char *group, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[16384];
	int rc;

	rc = getgrnam_r(group, &gr, buf, sizeof(buf), &res);
	if (rc != 0 || !res) {
		log_error("control socket group \"%s\" does not exist%s%s", group,
			  rc ? ": " : "", rc ? strerror(rc) : "");
		return false;
	}
	*gid = gr.gr_gid;
	return true;
}

struct control_server *control_listen(struct event_base *base, const char *path,
		const struct control_command *commands, void *arg)
{
	return control_listen_group(base, path, NULL, commands, arg);
}

struct control_server *control_listen_group(struct event_base *base, const char *path,
		const char *group, const struct control_command *commands, void *arg)
{
	struct control_server *srv = NULL;
	struct sockaddr_un sun;
	mode_t old_umask;
	gid_t gid = 0;
	bool bound = false;
	int fd = -1;

	if (!control_fill_addr(path, &sun)) {
		log_error("control socket path \"%s\" is too long", path);
		return NULL;
	}
	if (group && !control_lookup_group(group, &gid))
		return NULL;
	control_make_parent(path);

	/* A socket file that accepts connections belongs to a running daemon. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("could not create control socket: %s", strerror(errno));
		goto fail;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		log_error("control socket \"%s\" is in use: is another straitd running?", path);
		goto fail;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		log_error("could not remove stale control socket \"%s\": %s", path, strerror(errno));
		goto fail;
	}
	close(fd);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_error("could not create control socket: %s", strerror(errno));
		goto fail;
	}
	/* 0600, or 0660 for a group: the credential check guards the window before chown. */
	old_umask = umask(group ? 0117 : 0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old_umask);
		log_error("could not bind control socket \"%s\": %s", path, strerror(errno));
		goto fail;
	}
	umask(old_umask);
	bound = true;
	if (group && lchown(path, (uid_t)-1, gid) < 0) {
		log_error("could not give control socket \"%s\" to group \"%s\": %s", path, group,
			  strerror(errno));
		goto fail;
	}

	srv = calloc(1, sizeof(*srv));
	if (!srv || !(srv->path = strdup(path)) || (group && !(srv->group = strdup(group)))) {
		log_error("out of memory");
		goto fail;
	}
	srv->gid = gid;
	srv->base = base;
	srv->commands = commands;
	srv->arg = arg;
	srv->listener = evconnlistener_new(base, control_accept_cb, srv,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, fd);
	if (!srv->listener) {
		log_error("could not listen on control socket \"%s\"", path);
		goto fail;
	}
	evconnlistener_set_error_cb(srv->listener, control_accept_error_cb);
	if (group)
		log_info("control socket listening on \"%s\" (group \"%s\", mode 0660)", path, group);
	else
		log_info("control socket listening on \"%s\"", path);
	return srv;
fail:
	if (bound)
		unlink(path);
	if (fd >= 0)
		close(fd);
	if (srv) {
		free(srv->path);
		free(srv->group);
	}
	free(srv);
	return NULL;
}

void control_close(struct control_server *srv)
{
	if (!srv)
		return;
	while (srv->pending) {
		struct control_request *req = srv->pending;
		srv->pending = req->next;
		control_request_free(req);
	}
	evconnlistener_free(srv->listener);
	unlink(srv->path);
	free(srv->path);
	free(srv->group);
	free(srv);
}

int control_call(const char *path, int argc, char **argv, bool *ok, char **body,
		char *err, size_t errlen)
{
	struct sockaddr_un sun;
	char *reply = NULL, *nl;
	size_t len = 0, cap = 0;
	int fd, ret = -1;

	if (!control_fill_addr(path, &sun)) {
		snprintf(err, errlen, "control socket path \"%s\" is too long", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "could not create socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "could not connect to straitd at \"%s\": %s%s", path,
			 strerror(errno),
			 errno == ENOENT || errno == ECONNREFUSED ? " (is straitd running?)" : "");
		goto out;
	}
	for (int i = 0; i < argc; i++) {
		const char *sep = i + 1 < argc ? "\t" : "\n";
		if (strchr(argv[i], '\t') || strchr(argv[i], '\n')) {
			snprintf(err, errlen, "argument contains a tab or newline");
			goto out;
		}
		if (write(fd, argv[i], strlen(argv[i])) < 0 || write(fd, sep, 1) < 0) {
			snprintf(err, errlen, "could not send request: %s", strerror(errno));
			goto out;
		}
	}
	for (;;) {
		ssize_t n;
		if (cap - len < 4096) {
			char *grown = realloc(reply, cap ? cap * 2 : 8192);
			if (!grown) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			reply = grown;
			cap = cap ? cap * 2 : 8192;
		}
		n = read(fd, reply + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "could not read reply: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (!reply || !(nl = memchr(reply, '\n', len))) {
		snprintf(err, errlen, "straitd closed the connection without a reply");
		goto out;
	}
	reply[len] = '\0';
	*nl = '\0';
	if (strcmp(reply, "ok") != 0 && strcmp(reply, "error") != 0) {
		snprintf(err, errlen, "malformed reply from straitd");
		goto out;
	}
	*ok = strcmp(reply, "ok") == 0;
	*body = strdup(nl + 1);
	if (!*body) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ret = 0;
out:
	free(reply);
	close(fd);
	return ret;
}
