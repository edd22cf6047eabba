/*
 * pgversion.h — what each PostgreSQL major version has of the features strait
 * uses when they are there, so a missing one is said once (log and status)
 * instead of failing or being guessed at.
 *
 * The source: logical decoding messages (14), a slot's invalidation_reason
 * and inactive_since (17), idle_replication_slot_timeout (18). The target:
 * max_active_replication_origins (18; before it, replication origins share
 * max_replication_slots).
 *
 * server_version is PQserverVersion()'s: 140011 for 14.11.
 */
#ifndef STRAIT_PGVERSION_H
#define STRAIT_PGVERSION_H

#include <stdbool.h>
#include <stddef.h>

struct json_out;

/* Which end of a stream a server is. */
enum pgversion_role { PGVERSION_SOURCE, PGVERSION_TARGET };

/* The most features a list names. */
#define PGVERSION_MAX_LACKS 8

/*
 * The features strait would use that server_version lacks, each as a static
 * "what (major)" string; returns how many (at most PGVERSION_MAX_LACKS).
 */
size_t pgversion_lacks(int server_version, enum pgversion_role role, const char **out);

/* "13.23" from 130023 (or "9.6.24" from 90624) into buf. */
char *pgversion_format(int server_version, char *buf, size_t len);

/* The target's setting that bounds the replication origins in use at once. */
const char *pgversion_origin_limit_setting(int server_version);

/* Whether the slot view has invalidation_reason and inactive_since (17+). */
bool pgversion_has_invalidation_reason(int server_version);

/* Whether idle_replication_slot_timeout exists (18+). */
bool pgversion_has_idle_slot_timeout(int server_version);

/*
 * One line for the log: "PostgreSQL 13.23, without logical decoding
 * messages (14), ..." or "PostgreSQL 18.1"; malloc'd, NULL when out of
 * memory.
 */
char *pgversion_describe(int server_version, enum pgversion_role role);

/* {"version": "13.23", "version_num": 130023, "lacks": [...]} under key. */
void pgversion_json(struct json_out *j, const char *key, int server_version,
		enum pgversion_role role);

#endif
