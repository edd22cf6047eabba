/*
 * daemon.h — straitd's life cycle: load the config, work out the site, bring
 * up the tunnel and the control socket, run the event loop, reload on SIGHUP
 * (a config with errors is refused and the old one stays in force) and shut
 * down cleanly on SIGTERM/SIGINT.
 */
#ifndef STRAIT_DAEMON_H
#define STRAIT_DAEMON_H

#include <stdbool.h>

struct daemon_options {
	const char *config_path;
	const char *site;            /* NULL: found from the private key */
	bool keep_tunnel;            /* leave the interface up at exit */
};

/* Runs until told to stop. Returns the process exit code. */
int daemon_run(const struct daemon_options *opts);

#endif
