"""The chaos test's ledger workload: every committed transaction inserts one
ledger row with a unique, increasing id and moves its amount between two
accounts, so a lost, duplicated or half-applied transaction shows on the
target.

Writers survive restarts of the source server: a failed statement rolls the
transaction back (its id is simply never used again); a COMMIT whose answer
was lost is "unknown" until resolve_unknown() asks the source.
"""

import random
import threading
import time

import psycopg

ACCOUNTS = 16
INITIAL_BALANCE = 1000000


def create_schema(pg):
    """Tables and the opening balances, on each site before the slot exists."""
    pg.sql("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
    pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, from_acct int NOT NULL, "
           "to_acct int NOT NULL, amount int NOT NULL, at timestamptz NOT NULL DEFAULT now())")
    pg.sql("INSERT INTO accounts SELECT g, %s FROM generate_series(1, %s) g",
           (INITIAL_BALANCE, ACCOUNTS))


class Ledger:
    """Writer threads against one PostgreSQL server.

    committed: ids whose COMMIT returned; unknown: ids whose COMMIT was sent
    but whose answer never came (a server restart at that moment)."""

    def __init__(self, pg, writers=2, pause=0.004, seed=0):
        self.pg = pg
        self.writers = writers
        self.pause = pause
        self.next_id = 1
        self.committed = set()
        self.unknown = set()
        self.errors = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = []
        self.seed = seed

    # ------------------------------------------------------------ running

    def start(self):
        self.stop_event.clear()
        self.threads = [threading.Thread(target=self._writer, args=(i,), daemon=True)
                        for i in range(self.writers)]
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
            if t.is_alive():
                raise RuntimeError("a ledger writer did not stop within 60 s")
        self.threads = []

    def _take_id(self):
        with self.lock:
            i = self.next_id
            self.next_id += 1
            return i

    def _connect(self):
        while not self.stop_event.is_set():
            try:
                return psycopg.connect(self.pg.dsn(), autocommit=False, connect_timeout=5)
            except psycopg.Error:
                with self.lock:
                    self.errors += 1
                time.sleep(0.2)
        return None

    def _writer(self, n):
        rng = random.Random(f"{self.seed}:{n}")
        conn = None
        while not self.stop_event.is_set():
            if conn is None:
                conn = self._connect()
                if conn is None:
                    return
            i = self._take_id()
            a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
            amount = rng.randint(1, 500)
            lo, hi = sorted((a, b))       # same lock order in every writer
            deltas = {a: -amount, b: amount}
            try:
                conn.execute("INSERT INTO ledger (id, from_acct, to_acct, amount) "
                             "VALUES (%s, %s, %s, %s)", (i, a, b, amount))
                for acct in (lo, hi):
                    conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                                 (deltas[acct], acct))
            except psycopg.Error:
                # never committed: the id stays unused
                conn = self._drop(conn)
                continue
            try:
                conn.commit()
            except psycopg.Error:
                with self.lock:
                    self.unknown.add(i)
                conn = self._drop(conn)
                continue
            with self.lock:
                self.committed.add(i)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn):
        with self.lock:
            self.errors += 1
        try:
            conn.close()
        except Exception:
            pass
        return None

    # ------------------------------------------------------------ checking

    def resolve_unknown(self):
        """Asks the source which unknown commits happened; they join committed."""
        if not self.unknown:
            return 0, 0
        ids = sorted(self.unknown)
        rows = self.pg.sql("SELECT id FROM ledger WHERE id = ANY(%s)", (ids,))
        happened = {r[0] for r in rows}
        self.committed |= happened
        self.unknown.clear()
        return len(happened), len(ids) - len(happened)
