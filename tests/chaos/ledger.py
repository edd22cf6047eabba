"""The chaos test's ledger workload: every committed transaction inserts one
ledger row with a unique, increasing id and moves its amount between two
accounts, so a lost, duplicated or half-applied transaction shows on the
target. Every few seconds the first writer commits instead one transaction
of thousands of ledger rows with wide memos (a megabyte or more, several
256 KiB batches) that moves all their amounts at once: applied in part, it
shows in the ids and in the balances.

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
BIG_ROWS = (2000, 5000)          # rows of one multi-batch transaction
BIG_EVERY = (2.0, 6.0)           # seconds between two of them
MEMO_BYTES = 400                 # random hex: compresses about 2x, never more


def create_schema(pg):
    """Tables and the opening balances, on each site before the slot exists."""
    pg.sql("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
    pg.sql("CREATE TABLE ledger (id bigint PRIMARY KEY, from_acct int NOT NULL, "
           "to_acct int NOT NULL, amount int NOT NULL, at timestamptz NOT NULL DEFAULT now(), "
           "memo text)")
    pg.sql("INSERT INTO accounts SELECT g, %s FROM generate_series(1, %s) g",
           (INITIAL_BALANCE, ACCOUNTS))
    # rows of large transactions (faults.LargeTransactionRestarts)
    pg.sql("CREATE TABLE bulk (id bigint PRIMARY KEY, a float8 NOT NULL, b text NOT NULL)")


class Ledger:
    """Writer threads against one PostgreSQL server.

    committed: ids whose COMMIT returned; unknown: ids whose COMMIT was sent
    but whose answer never came (a server restart at that moment).
    big_every: seconds between two multi-batch transactions (a range drawn
    from), or None for none."""

    def __init__(self, pg, writers=2, pause=0.004, seed=0, big_every=BIG_EVERY):
        self.pg = pg
        self.writers = writers
        self.pause_s = pause
        self.big_every = big_every
        self.next_id = 1
        self.committed = set()
        self.unknown = set()
        self.errors = 0
        self.big_txns = 0
        self.big_rows = 0
        self.lock = threading.Lock()
        self.gate = threading.Lock()      # held by each transaction, and by pause()
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

    def pause(self):
        """Holds the writers between two transactions until resume()."""
        self.gate.acquire()

    def resume(self):
        self.gate.release()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
            if t.is_alive():
                raise RuntimeError("a ledger writer did not stop within 60 s")
        self.threads = []

    def _take_id(self, n=1):
        with self.lock:
            i = self.next_id
            self.next_id += n
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

    def _big(self, conn, rng):
        """One transaction of thousands of ledger rows with wide memos; it
        moves their amounts with one UPDATE per account, in id order as the
        other writers lock them. False when it did not commit."""
        rows = rng.randint(*BIG_ROWS)
        first = self._take_id(rows)
        ids = range(first, first + rows)
        deltas = {}
        data = []
        for i in ids:
            a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
            amount = rng.randint(1, 500)
            deltas[a] = deltas.get(a, 0) - amount
            deltas[b] = deltas.get(b, 0) + amount
            data.append((i, a, b, amount, rng.getrandbits(MEMO_BYTES * 4).to_bytes(
                MEMO_BYTES // 2, "big").hex()))
        try:
            with conn.cursor().copy("COPY ledger (id, from_acct, to_acct, amount, memo) "
                                    "FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            for acct in sorted(deltas):
                conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                             (deltas[acct], acct))
        except psycopg.Error:
            return False       # never committed: the ids stay unused
        try:
            conn.commit()
        except psycopg.Error:
            with self.lock:
                self.unknown.update(ids)
            return False
        with self.lock:
            self.committed.update(ids)
            self.big_txns += 1
            self.big_rows += rows
        return True

    def _writer(self, n):
        rng = random.Random(f"{self.seed}:{n}")
        conn = None
        next_big = (time.monotonic() + rng.uniform(*self.big_every)
                    if n == 0 and self.big_every else None)
        while not self.stop_event.is_set():
            if conn is None:
                conn = self._connect()
                if conn is None:
                    return
            if next_big is not None and time.monotonic() >= next_big:
                next_big = time.monotonic() + rng.uniform(*self.big_every)
                with self.gate:
                    ok = self._big(conn, rng)
                if not ok:
                    conn = self._drop(conn)
                continue
            with self.gate:
                conn = self._one(conn, rng)
            if conn is not None and self.pause_s:
                time.sleep(self.pause_s)
        if conn is not None:
            self._drop(conn)

    def _one(self, conn, rng):
        """One ledger row and its two balances; returns the connection, or
        None when it was dropped."""
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
            return self._drop(conn)
        try:
            conn.commit()
        except psycopg.Error:
            with self.lock:
                self.unknown.add(i)
            return self._drop(conn)
        with self.lock:
            self.committed.add(i)
        return conn

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
