/*
 * replcmd.h — replication commands as each PostgreSQL major version takes
 * them.
 *
 * PostgreSQL 15 introduced the option-list syntax of CREATE_REPLICATION_SLOT
 * (… LOGICAL pgoutput (SNAPSHOT 'export')); 13 and 14 know only the keyword
 * form (… LOGICAL pgoutput EXPORT_SNAPSHOT), which later versions still
 * accept. pgoutput speaks protocol version 2 and sends logical decoding
 * messages and streams in-progress transactions from 14 on; 13 speaks
 * version 1, whose messages outside streamed transactions are the same as
 * version 2's.
 *
 * server_version is PQserverVersion()'s: 140011 for 14.11.
 */
#ifndef STRAIT_REPLCMD_H
#define STRAIT_REPLCMD_H

#include <stdbool.h>

/* The pgoutput protocol version to ask for: 1 before PostgreSQL 14, else 2. */
int replcmd_proto_version(int server_version);

/* Whether pgoutput takes the messages option (logical decoding messages). */
bool replcmd_has_messages(int server_version);

/*
 * Whether pgoutput streams transactions while they run (streaming 'on',
 * protocol 2): from PostgreSQL 14, once a transaction's changes pass
 * logical_decoding_work_mem.
 */
bool replcmd_has_streaming(int server_version);

/*
 * CREATE_REPLICATION_SLOT for a pgoutput slot named slot (a valid slot
 * name: lower-case letters, digits, '_'), temporary or not, exporting a
 * snapshot or not. Malloc'd; NULL when out of memory.
 */
char *replcmd_create_slot_sql(int server_version, const char *slot, bool temporary,
		bool export_snapshot);

#endif
