/*
 * straitd.c — the strait daemon's entry point: options, logging, then the
 * daemon's life cycle (daemon.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fault.h"
#include "common/log.h"
#include "config/config.h"
#include "gateway/daemon/daemon.h"

static void straitd_usage(FILE *out)
{
	fprintf(out,
		"Usage: straitd [OPTION]...\n"
		"The strait replication gateway daemon: one per site.\n"
		"\n"
		"  -c, --config FILE      site config (default " CONFIG_DEFAULT_PATH ")\n"
		"  -s, --site NAME        this host's site (default: the site whose public_key\n"
		"                         matches the key in private_key_file)\n"
		"  -l, --log-level LEVEL  debug, info, notice, warning or error (default info)\n"
		"      --keep-tunnel      leave the WireGuard interface up at exit\n"
		"  -h, --help             show this help and exit\n"
		"  -V, --version          show the version and exit\n"
		"\n"
		"Signals: SIGHUP reloads the config (a config with errors is refused and the\n"
		"old one stays in force); SIGTERM and SIGINT stop the daemon.\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "site", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "keep-tunnel", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon_options opts = { .config_path = CONFIG_DEFAULT_PATH };
	enum log_level level;
	int c;

	log_init("straitd");
	if (fault_unknown_point()) {
		fprintf(stderr, "straitd: STRAIT_FAULTS: unknown fault point or action \"%s\"\n",
			fault_unknown_point());
		return 2;
	}
	while ((c = getopt_long(argc, argv, "c:s:l:hV", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			opts.config_path = optarg;
			break;
		case 's':
			opts.site = optarg;
			break;
		case 'l':
			if (!log_parse_level(optarg, &level)) {
				fprintf(stderr, "straitd: invalid log level \"%s\" "
					"(use debug, info, notice, warning or error)\n", optarg);
				return 2;
			}
			log_set_level(level);
			break;
		case 'k':
			opts.keep_tunnel = true;
			break;
		case 'h':
			straitd_usage(stdout);
			return 0;
		case 'V':
			printf("straitd %s\n", STRAIT_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try \"straitd --help\" for more information.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "straitd: unexpected argument \"%s\"\n"
			"Try \"straitd --help\" for more information.\n", argv[optind]);
		return 2;
	}
	return daemon_run(&opts);
}
