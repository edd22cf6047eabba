/*
 * relmap.h — mapping a source relation (what a pgoutput Relation message
 * announced) onto a target table (what the target's catalog says), column by
 * column and by name.
 *
 * NOTES
 *
 * Columns match by name, never by position: the target may order its columns
 * differently and may have extra columns (they keep their defaults). Every
 * column the source publishes must exist on the target; otherwise the
 * mapping fails with a message that names the table and all the missing
 * columns, so the operator can fix the target in one go. Types are not
 * compared: values travel as text and the target's input functions convert
 * them (int4 into int8 is fine; a type the target's version lacks can land in
 * a text column). A value the target does not accept — text that does not
 * parse, or a value only a newer version knows, such as 17's infinite
 * interval on 16 — fails at apply time; loaderr.h names its column.
 *
 * Generated columns: the target computes its own, so the apply never writes
 * a column that is generated on the target (its att is flagged generated and
 * is only ever read to find a row). A source never publishes its generated
 * columns before PostgreSQL 18, and on 18 only when the publication says
 * publish_generated_columns = stored (or lists them); a target of any
 * version then takes the rows: a plain column there gets the source's
 * values, a generated one computes its own.
 *
 * Two notions of key. The source's replica identity (flagged in the Relation
 * message) finds the row an UPDATE or DELETE changes. The target's own key
 * (its primary key, else its replica identity index) is the arbiter of
 * ON CONFLICT when the conflict policy needs one; it is usable only when the
 * source publishes all of its columns.
 *
 * The catalog query reads one table's columns in one round trip: relkind,
 * column names and types, generated flags, key membership, and whether the
 * column's type has a default btree equality operator ("eqable"; REPLICA
 * IDENTITY FULL matches such columns with "=", which can use an index, and
 * the others — json, xml, point, arrays, composites... — by their text form).
 *
 * Return conventions: bool, false on failure with a message for the caller
 * to log (out of memory when the message itself is NULL).
 */
#ifndef STRAIT_RELMAP_H
#define STRAIT_RELMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replicator/pgoutput.h"

struct pg_result;               /* libpq's PGresult */

#define RELMAP_MUSTCHECK __attribute__((warn_unused_result))

/* One column of a target table. */
struct relmap_column {
	char *name;
	uint32_t type_oid;
	bool eqable;                 /* its type has a default btree equality */
	bool key;                    /* in the target's primary key / identity index */
	bool generated;
};

/* A target table as its catalog describes it. */
struct relmap_target {
	char *nspname;
	char *relname;
	char relkind;                /* 'r' or 'p' */
	size_t ncols;
	size_t cap;
	struct relmap_column *cols;
};

/* One source column and where it lands. */
struct relmap_att {
	uint16_t target;             /* index into the target's columns */
	char *quoted;                /* the column's name as an SQL identifier */
	char *name;                  /* the column's name */
	uint32_t type_oid;           /* the target column's type: the parameter type */
	bool eqable;
	bool src_key;                /* in the source's replica identity */
	bool tgt_key;                /* in the target's key */
	bool generated;              /* generated on the target: never written */
};

struct relmap {
	char *display;               /* schema.table, for messages */
	char *qualified;             /* "schema"."table", for SQL */
	bool partitioned;
	char replident;              /* the source's PGOUTPUT_REPLIDENT_* */
	uint16_t natts;              /* source columns */
	struct relmap_att *atts;
	uint16_t n_src_key;
	uint16_t n_tgt_key;          /* target key columns (published or not) */
	bool tgt_key_usable;         /* n_tgt_key > 0 and the source publishes them all */
};

/* The catalog query: parameters $1 schema, $2 table; one row per column. */
extern const char relmap_catalog_sql[];
/* Its columns, in order. */
enum relmap_catalog_field {
	RELMAP_F_RELKIND, RELMAP_F_ATTNAME, RELMAP_F_ATTTYPID, RELMAP_F_GENERATED,
	RELMAP_F_KEY, RELMAP_F_EQABLE, RELMAP_F_COUNT
};

/* A target description to fill in column by column. NULL when out of memory. */
struct relmap_target *relmap_target_new(const char *nspname, const char *relname,
		char relkind) RELMAP_MUSTCHECK;
bool relmap_target_add(struct relmap_target *t, const char *name, uint32_t type_oid,
		bool eqable, bool key, bool generated) RELMAP_MUSTCHECK;
void relmap_target_free(struct relmap_target *t);

/*
 * Builds the target description from the catalog query's result (for the
 * table nspname.relname). No rows means the table is missing: *out is then
 * NULL and the call succeeds. False on a malformed result or out of memory
 * (*err as described above).
 */
bool relmap_target_from_result(const char *nspname, const char *relname,
		const struct pg_result *res, struct relmap_target **out, char **err)
		RELMAP_MUSTCHECK;

/*
 * Maps src onto tgt (NULL: the target table is missing). On a mismatch
 * returns false with *err, for example:
 *   target table "public.orders" lacks columns "note", "created_at" that the source publishes
 */
bool relmap_build(const struct pgoutput_rel *src, const struct relmap_target *tgt,
		struct relmap **out, char **err) RELMAP_MUSTCHECK;
void relmap_free(struct relmap *m);

/* The source column named name, or -1. */
int relmap_find(const struct relmap *m, const char *name);

#endif
