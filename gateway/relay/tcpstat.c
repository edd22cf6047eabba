/*
 * tcpstat.c — TCP_INFO, read with the kernel's own struct.
 */
#include "gateway/relay/tcpstat.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

bool tcp_stat_read(int fd, struct tcp_stat *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(out, 0, sizeof(*out));
	memset(&ti, 0, sizeof(ti));
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	out->total_retrans = ti.tcpi_total_retrans;
	/* an older kernel fills less of the struct: what it left out stays 0 */
	if (len >= offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof(ti.tcpi_bytes_retrans))
		out->bytes_retrans = ti.tcpi_bytes_retrans;
	return true;
}
