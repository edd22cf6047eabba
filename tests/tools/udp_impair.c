/*
 * udp_impair.c — a UDP relay that impairs what it carries, for WAN tests
 * (tests/integration/test_wan.py): the kernel here has no netem, so the
 * WireGuard endpoints of the sites point at this relay instead, and it
 * forwards each datagram to the real endpoint after a delay, or drops it.
 *
 *   udp_impair --map LISTEN=DEST [--map LISTEN=DEST]...
 *              [--delay MS] [--jitter MS] [--loss PCT] [--reorder PCT]
 *              [--seed N] [--stats FILE] [--max-queue N]
 *
 * LISTEN and DEST are IPv4 host:port. For every map the relay listens on
 * LISTEN; a datagram from a new client address gets its own upstream socket
 * connected to DEST, so replies from DEST go back to that client through the
 * LISTEN socket. Both directions are impaired the same way:
 *
 *   --delay MS     one-way delay added to every datagram
 *   --jitter MS    plus a uniform random offset in [-MS, +MS] (so datagrams
 *                  may overtake each other, as with netem's jitter)
 *   --loss PCT     each datagram is dropped with this probability (0-100)
 *   --reorder PCT  each datagram skips the delay with this probability, so
 *                  it overtakes those in flight (netem's "reorder")
 *   --seed N       seed of the random choices (default 1), for repeatability
 *   --max-queue N  datagrams held at once (default 65536); beyond, dropped
 *
 * It prints "ready" on stdout once every socket is bound. On SIGTERM or
 * SIGINT it prints one line of statistics as JSON (to stdout and to --stats
 * FILE) and exits 0:
 *
 *   {"received":N,"forwarded":N,"dropped_loss":N,"dropped_queue":N,
 *    "delayed":N,"reordered":N,"bytes":N,"clients":N,"max_queued":N}
 *
 * Plain poll(2) and a binary heap of datagrams ordered by due time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IMPAIR_MAX_MAPS    8
#define IMPAIR_MAX_CLIENTS 64
#define IMPAIR_MAX_DGRAM   65536

struct impair_map {
	struct sockaddr_in listen_addr;
	struct sockaddr_in dest;
	int fd;
};

/* One client of one map, with its own upstream socket. */
struct impair_client {
	struct impair_map *map;
	struct sockaddr_in addr;
	int fd;                        /* connected to map->dest */
};

/* A datagram waiting for its due time. */
struct impair_packet {
	uint64_t due_ns;
	uint64_t seq;                  /* ties keep arrival order */
	int fd;                        /* socket to send it from */
	struct sockaddr_in to;
	bool connected;                /* fd is connected: send, not sendto */
	size_t len;
	unsigned char *data;
};

struct impair_stats {
	uint64_t received, forwarded, dropped_loss, dropped_queue, delayed, reordered, bytes;
	size_t max_queued;
};

static struct impair_map maps[IMPAIR_MAX_MAPS];
static size_t n_maps;
static struct impair_client clients[IMPAIR_MAX_CLIENTS];
static size_t n_clients;
static struct impair_packet *heap;
static size_t heap_len, heap_cap = 65536;
static uint64_t next_seq;
static struct impair_stats stats;
static uint64_t rng_state = 1;
static double delay_ms, jitter_ms, loss_pct, reorder_pct;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, seedable and good enough for test impairments. */
static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
	return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static bool heap_less(const struct impair_packet *a, const struct impair_packet *b)
{
	return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static void heap_swap(size_t i, size_t j)
{
	struct impair_packet t = heap[i];

	heap[i] = heap[j];
	heap[j] = t;
}

static void heap_push(const struct impair_packet *p)
{
	size_t i = heap_len++;

	heap[i] = *p;
	while (i > 0 && heap_less(&heap[i], &heap[(i - 1) / 2])) {
		heap_swap(i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static struct impair_packet heap_pop(void)
{
	struct impair_packet top = heap[0];
	size_t i = 0;

	heap[0] = heap[--heap_len];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < heap_len && heap_less(&heap[l], &heap[m]))
			m = l;
		if (r < heap_len && heap_less(&heap[r], &heap[m]))
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
	return top;
}

static bool parse_addr(const char *text, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return false;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return false;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

static bool parse_pct(const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end);

	if (end == text || *end != '\0' || v < 0 || v > 100)
		return false;
	*out = v;
	return true;
}

static bool parse_ms(const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end);

	if (end == text || *end != '\0' || v < 0 || v > 60000)
		return false;
	*out = v;
	return true;
}

static int udp_socket(const struct sockaddr_in *bind_to)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, size = 4 * 1024 * 1024;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Bursts of a busy tunnel must not be lost in the socket before we see them. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (bind_to && bind(fd, (const struct sockaddr *)bind_to, sizeof(*bind_to)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct impair_client *client_for(struct impair_map *map, const struct sockaddr_in *from)
{
	struct impair_client *c;

	for (size_t i = 0; i < n_clients; i++) {
		c = &clients[i];
		if (c->map == map && c->addr.sin_addr.s_addr == from->sin_addr.s_addr &&
		    c->addr.sin_port == from->sin_port)
			return c;
	}
	if (n_clients == IMPAIR_MAX_CLIENTS)
		return NULL;
	c = &clients[n_clients];
	c->map = map;
	c->addr = *from;
	c->fd = udp_socket(NULL);
	if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)&map->dest, sizeof(map->dest)) < 0) {
		fprintf(stderr, "udp_impair: could not open an upstream socket: %s\n", strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		return NULL;
	}
	n_clients++;
	return c;
}

/* Decides the fate of one datagram and queues it (or drops it). */
static void impair(const unsigned char *data, size_t len, int fd, const struct sockaddr_in *to,
		bool connected)
{
	struct impair_packet p;
	double ms = delay_ms;

	stats.received++;
	if (loss_pct > 0 && rng_unit() * 100.0 < loss_pct) {
		stats.dropped_loss++;
		return;
	}
	if (heap_len == heap_cap) {
		stats.dropped_queue++;
		return;
	}
	if (reorder_pct > 0 && rng_unit() * 100.0 < reorder_pct) {
		ms = 0;
		stats.reordered++;
	} else {
		if (jitter_ms > 0)
			ms += (rng_unit() * 2.0 - 1.0) * jitter_ms;
		if (ms < 0)
			ms = 0;
		if (ms > 0)
			stats.delayed++;
	}
	p.data = malloc(len ? len : 1);
	if (!p.data) {
		stats.dropped_queue++;
		return;
	}
	memcpy(p.data, data, len);
	p.len = len;
	p.fd = fd;
	p.to = *to;
	p.connected = connected;
	p.seq = next_seq++;
	p.due_ns = now_ns() + (uint64_t)(ms * 1e6);
	heap_push(&p);
	if (heap_len > stats.max_queued)
		stats.max_queued = heap_len;
}

static void send_due(void)
{
	uint64_t now = now_ns();

	while (heap_len > 0 && heap[0].due_ns <= now) {
		struct impair_packet p = heap_pop();
		ssize_t n;

		if (p.connected)
			n = send(p.fd, p.data, p.len, 0);
		else
			n = sendto(p.fd, p.data, p.len, 0, (const struct sockaddr *)&p.to, sizeof(p.to));
		if (n == (ssize_t)p.len) {
			stats.forwarded++;
			stats.bytes += p.len;
		} else {
			stats.dropped_queue++;   /* a full socket buffer: lost on the way */
		}
		free(p.data);
	}
}

/* Reads everything waiting on fd; from a listen socket or a client's upstream. */
static void drain(int fd, struct impair_map *map, struct impair_client *client)
{
	static unsigned char buf[IMPAIR_MAX_DGRAM];

	for (;;) {
		struct sockaddr_in from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);

		if (n < 0)
			return;          /* EAGAIN, or an ICMP error from a closed port */
		if (map) {
			struct impair_client *c = client_for(map, &from);

			if (c)
				impair(buf, (size_t)n, c->fd, &map->dest, true);
		} else {
			/* a reply: back to the client, from the address it wrote to */
			impair(buf, (size_t)n, client->map->fd, &client->addr, false);
		}
	}
}

static void print_stats(FILE *out)
{
	fprintf(out, "{\"received\":%" PRIu64 ",\"forwarded\":%" PRIu64 ",\"dropped_loss\":%" PRIu64
		",\"dropped_queue\":%" PRIu64 ",\"delayed\":%" PRIu64 ",\"reordered\":%" PRIu64
		",\"bytes\":%" PRIu64 ",\"clients\":%zu,\"max_queued\":%zu}\n",
		stats.received, stats.forwarded, stats.dropped_loss, stats.dropped_queue,
		stats.delayed, stats.reordered, stats.bytes, n_clients, stats.max_queued);
	fflush(out);
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: udp_impair --map LISTEN=DEST [--map ...] [--delay MS] [--jitter MS]\n"
		     "                  [--loss PCT] [--reorder PCT] [--seed N] [--stats FILE]\n"
		     "                  [--max-queue N]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "map", required_argument, NULL, 'm' },
		{ "delay", required_argument, NULL, 'd' },
		{ "jitter", required_argument, NULL, 'j' },
		{ "loss", required_argument, NULL, 'l' },
		{ "reorder", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 's' },
		{ "stats", required_argument, NULL, 'S' },
		{ "max-queue", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pollfd pfds[IMPAIR_MAX_MAPS + IMPAIR_MAX_CLIENTS];
	const char *stats_path = NULL;
	struct sigaction sa;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *eq;

		switch (c) {
		case 'm':
			eq = strchr(optarg, '=');
			if (n_maps == IMPAIR_MAX_MAPS || !eq) {
				usage(stderr);
				return 2;
			}
			*eq = '\0';
			if (!parse_addr(optarg, &maps[n_maps].listen_addr) ||
			    !parse_addr(eq + 1, &maps[n_maps].dest)) {
				fprintf(stderr, "udp_impair: bad map \"%s=%s\" (use ip:port=ip:port)\n",
					optarg, eq + 1);
				return 2;
			}
			n_maps++;
			break;
		case 'd':
		case 'j':
			if (!parse_ms(optarg, c == 'd' ? &delay_ms : &jitter_ms)) {
				fprintf(stderr, "udp_impair: bad milliseconds \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'l':
		case 'r':
			if (!parse_pct(optarg, c == 'l' ? &loss_pct : &reorder_pct)) {
				fprintf(stderr, "udp_impair: bad percentage \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 's':
			rng_state = strtoull(optarg, NULL, 10);
			break;
		case 'S':
			stats_path = optarg;
			break;
		case 'q':
			heap_cap = (size_t)strtoul(optarg, NULL, 10);
			if (heap_cap == 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || n_maps == 0) {
		usage(stderr);
		return 2;
	}
	heap = calloc(heap_cap, sizeof(*heap));
	if (!heap) {
		fprintf(stderr, "udp_impair: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < n_maps; i++) {
		maps[i].fd = udp_socket(&maps[i].listen_addr);
		if (maps[i].fd < 0) {
			fprintf(stderr, "udp_impair: could not bind map %zu: %s\n", i, strerror(errno));
			return 1;
		}
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);

	while (!stop) {
		size_t n = 0;
		int timeout = -1;

		for (size_t i = 0; i < n_maps; i++)
			pfds[n++] = (struct pollfd){ .fd = maps[i].fd, .events = POLLIN };
		for (size_t i = 0; i < n_clients; i++)
			pfds[n++] = (struct pollfd){ .fd = clients[i].fd, .events = POLLIN };
		if (heap_len > 0) {
			uint64_t now = now_ns();

			timeout = heap[0].due_ns <= now ? 0 :
				(int)((heap[0].due_ns - now + 999999) / 1000000);
		}
		if (poll(pfds, n, timeout) < 0 && errno != EINTR) {
			fprintf(stderr, "udp_impair: poll: %s\n", strerror(errno));
			return 1;
		}
		for (size_t i = 0; i < n; i++) {
			if (!(pfds[i].revents & (POLLIN | POLLERR)))
				continue;
			if (i < n_maps)
				drain(pfds[i].fd, &maps[i], NULL);
			else
				drain(pfds[i].fd, NULL, &clients[i - n_maps]);
		}
		send_due();
	}

	print_stats(stdout);
	if (stats_path) {
		FILE *f = fopen(stats_path, "w");

		if (f) {
			print_stats(f);
			fclose(f);
		}
	}
	while (heap_len > 0)
		free(heap_pop().data);
	free(heap);
	for (size_t i = 0; i < n_clients; i++)
		close(clients[i].fd);
	for (size_t i = 0; i < n_maps; i++)
		close(maps[i].fd);
	return 0;
}
