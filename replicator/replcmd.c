/*
 * replcmd.c — replication commands as each PostgreSQL major version takes
 * them (replcmd.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "replicator/replcmd.h"

int replcmd_proto_version(int server_version)
{
	return server_version >= 140000 ? 2 : 1;
}

bool replcmd_has_messages(int server_version)
{
	return server_version >= 140000;
}

bool replcmd_has_streaming(int server_version)
{
	return server_version >= 140000;
}

char *replcmd_create_slot_sql(int server_version, const char *slot, bool temporary,
		bool export_snapshot)
{
	char *sql = NULL;
	int n;

	if (server_version >= 150000)
		n = asprintf(&sql, "CREATE_REPLICATION_SLOT \"%s\"%s LOGICAL pgoutput (SNAPSHOT '%s')",
			     slot, temporary ? " TEMPORARY" : "", export_snapshot ? "export" : "nothing");
	else
		n = asprintf(&sql, "CREATE_REPLICATION_SLOT \"%s\"%s LOGICAL pgoutput %s",
			     slot, temporary ? " TEMPORARY" : "",
			     export_snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
	return n < 0 ? NULL : sql;
}
