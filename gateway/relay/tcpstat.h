/*
 * tcpstat.h — what the kernel's TCP says about a connection (TCP_INFO):
 * how many segments and bytes it sent again. Apart from relay.c because
 * the kernel's struct (linux/tcp.h, which has the byte count) and libc's
 * netinet/tcp.h cannot share a file.
 */
#ifndef STRAIT_TCPSTAT_H
#define STRAIT_TCPSTAT_H

#include <stdbool.h>
#include <stdint.h>

struct tcp_stat {
	uint32_t total_retrans;      /* segments sent again over the connection's life */
	uint64_t bytes_retrans;      /* their payload bytes (0 from a kernel before 4.19) */
};

/* False (and *out zeroed) when fd is no TCP socket the kernel answers for. */
bool tcp_stat_read(int fd, struct tcp_stat *out);

#endif
