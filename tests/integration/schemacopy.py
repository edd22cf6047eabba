"""The source's schema (no rows) into the target, as an operator would before
an initial sync (strait copies rows, not DDL), for any pair of server versions.

Debian's pg_dump is 15: it dumps a server up to 15 and its output loads on the
same or a newer server, so that is the path whenever it applies. Otherwise
(a 16+ source, whose dump pg_dump 15 refuses, or a target older than the
source, which a dump is not meant for) the DDL is built from the source's
catalog with the server's own deparsers (format_type, pg_get_expr,
pg_get_constraintdef, pg_get_indexdef), which every version from 13 has.

The catalog path covers what the tests' schemas use: schemas, enum types,
sequences, ordinary tables (columns, NOT NULL, defaults, identity and
generated columns), constraints, indexes, sequence ownership and replica
identity. Not covered (a test that needs them writes its DDL on both ends):
partitions, inheritance, composite types, domains, views, functions."""

import harness

DUMP_MAX_VERSION = 15         # the Debian client's pg_dump

USER_NAMESPACES = ("n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
                   "AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'strait'")


def copy_schema(src, dst, dbname="postgres"):
    if src.version <= DUMP_MAX_VERSION and dst.version >= src.version:
        ddl = dump_schema(src, dbname)
    else:
        ddl = "\n".join(catalog_schema(src, dbname)) + "\n"
    harness.run(["psql", "-h", dst.sockdir, "-p", str(dst.port), "-U", "postgres", "-X", "-q",
                 "-v", "ON_ERROR_STOP=1", dbname], input=ddl)


def dump_schema(src, dbname):
    return harness.run(["pg_dump", "-h", src.sockdir, "-p", str(src.port), "-U", "postgres",
                        "--schema-only", "--no-publications", "--no-subscriptions",
                        dbname]).stdout


def catalog_schema(pg, dbname="postgres"):
    """The DDL statements of the user schema, in an order that loads."""
    def q(query, params=None):
        return pg.sql(query, params, dbname=dbname)
    out = [f"CREATE SCHEMA IF NOT EXISTS {s};" for (s,) in q(
        f"SELECT quote_ident(n.nspname) FROM pg_namespace n WHERE {USER_NAMESPACES} "
        "AND n.nspname <> 'public' ORDER BY 1")]
    out += enum_types(q)
    out += [f"CREATE SEQUENCE {name} AS {typ};" for name, typ in q(
        "SELECT c.oid::regclass::text, format_type(s.seqtypid, NULL) FROM pg_class c "
        "JOIN pg_sequence s ON s.seqrelid = c.oid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {USER_NAMESPACES} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE "
        "d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'i') ORDER BY 1")]
    tables = q("SELECT c.oid, c.oid::regclass::text, c.relreplident FROM pg_class c "
               f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_NAMESPACES} "
               "AND c.relkind = 'r' AND NOT c.relispartition ORDER BY 2")
    for oid, name, _ in tables:
        out.append(f"CREATE TABLE {name} ({', '.join(columns(q, oid))});")
    out += constraints(q, "<> 'f'") + indexes(q) + constraints(q, "= 'f'")
    out += [f"ALTER SEQUENCE {seq} OWNED BY {tbl}.{col};" for seq, tbl, col in q(
        "SELECT d.objid::regclass::text, d.refobjid::regclass::text, quote_ident(a.attname) "
        "FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S' "
        "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE d.deptype = 'a' AND d.classid = 'pg_class'::regclass AND {USER_NAMESPACES}")]
    for oid, name, ident in tables:
        out += replica_identity(q, oid, name, ident)
    return out


def enum_types(q):
    return [f"CREATE TYPE {name} AS ENUM ({labels});" for name, labels in q(
        "SELECT t.oid::regtype::text, string_agg(quote_literal(e.enumlabel), ', ' "
        "ORDER BY e.enumsortorder) FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
        f"JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_NAMESPACES} "
        "GROUP BY t.oid ORDER BY 1")]


def columns(q, oid):
    cols = []
    for name, typ, notnull, default, identity, generated in q(
            "SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
            "AND d.adnum = a.attnum WHERE a.attrelid = %s AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum", (oid,)):
        col = f"{name} {typ}"
        if generated:
            kind = "VIRTUAL" if generated == "v" else "STORED"
            col += f" GENERATED ALWAYS AS ({default}) {kind}"
        elif identity:
            col += f" GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY"
        elif default is not None:
            col += f" DEFAULT {default}"
        if notnull and not identity:
            col += " NOT NULL"
        cols.append(col)
    return cols


def constraints(q, kind):
    """Table constraints but NOT NULL (a column property before 18); foreign
    keys apart, after every table and unique index exists."""
    return [f"ALTER TABLE {tbl} ADD CONSTRAINT {name} {definition};" for tbl, name, definition in q(
        "SELECT k.conrelid::regclass::text, quote_ident(k.conname), pg_get_constraintdef(k.oid) "
        "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {USER_NAMESPACES} AND c.relkind = 'r' AND k.contype NOT IN ('n', 't') "
        f"AND k.conislocal AND k.contype::text {kind} ORDER BY 1, 2")]


def indexes(q):
    """The indexes no constraint made."""
    return [f"{definition};" for (definition,) in q(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {USER_NAMESPACES} AND c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM "
        "pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) "
        "ORDER BY 1")]


def replica_identity(q, oid, name, ident):
    if ident == "f":
        return [f"ALTER TABLE {name} REPLICA IDENTITY FULL;"]
    if ident == "n":
        return [f"ALTER TABLE {name} REPLICA IDENTITY NOTHING;"]
    if ident == "i":
        rows = q("SELECT quote_ident(c.relname) FROM pg_index i JOIN pg_class c "
                 "ON c.oid = i.indexrelid WHERE i.indrelid = %s AND i.indisreplident", (oid,))
        return [f"ALTER TABLE {name} REPLICA IDENTITY USING INDEX {rows[0][0]};"] if rows else []
    return []
