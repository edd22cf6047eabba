"""A verify's requests from an impersonated or compromised peer: the sink's
site builds every statement itself, so a VERIFY QUERY carrying SQL, a path
or a function call, naming a catalog table or a key column that is an
expression, is refused and logged, and the stream and the snapshot go on.

A fake "onprem" (with onprem's certificate) listens where the real one
would; the real "cloud" straitd dials it as its stream's source."""

import re
import socket
import ssl
import struct
import threading
import time

import harness
from harness import wait_until
from test_relay import frame, wire_str

FRAME_HELLO, FRAME_HEARTBEAT, FRAME_RESUME, FRAME_VERIFY = 0x01, 0x06, 0x08, 0x14
HOLD, MARK, READY, QUERY, RESULT, END = 1, 2, 3, 4, 5, 6
Q_SETTINGS, Q_CHECKSUM, Q_BOUNDARY, Q_ROWS = 1, 2, 3, 4


def value(v):
    if v is None:
        return struct.pack(">BI", 1, 0)
    b = v.encode()
    return struct.pack(">BI", 0, len(b)) + b


def verify_payload(op, job=1, seq=0, lsn=0, generation=0, text="", kind=0, schema="",
                   table="", rng=0, offset=0, keys=(), params=()):
    p = wire_str("app") + struct.pack(">QBBIQI", job, op, 1, seq, lsn, generation) + wire_str(text)
    p += struct.pack(">B", kind) + wire_str(schema) + wire_str(table)
    p += struct.pack(">BqQQ", rng, offset, 0, 0)
    p += struct.pack(">HI", len(keys), len(keys) + len(params))
    for v in list(keys) + list(params):
        p += value(v)
    return p


def parse_verify(p):
    (n,) = struct.unpack(">H", p[:2])
    o = 2 + n
    job, op, ok, seq, lsn, gen = struct.unpack(">QBBIQI", p[o:o + 26])
    o += 26
    (n,) = struct.unpack(">H", p[o:o + 2])
    text = p[o + 2:o + 2 + n].decode()
    o += 2 + n + 1
    for _ in range(2):
        (n,) = struct.unpack(">H", p[o:o + 2])
        o += 2 + n
    o += 1 + 24
    ncols, nvalues = struct.unpack(">HI", p[o:o + 6])
    o += 6
    values = []
    for _ in range(nvalues):
        null, n = struct.unpack(">BI", p[o:o + 5])
        values.append(None if null else p[o + 5:o + 5 + n].decode())
        o += 5 + n
    return {"op": op, "ok": ok, "seq": seq, "text": text, "ncols": ncols, "values": values}


class FakeSource:
    """onprem's relay listener, speaking just enough of the protocol."""

    def __init__(self, cluster):
        cfg = cluster.host("onprem")[1]
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(cfg["tls"]["cert"], cfg["tls"]["key"])
        self.ctx.load_verify_locations(cfg["tls"]["ca"])
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", cfg["relay"]["port"]))
        self.sock.listen(4)
        self.sock.settimeout(30)
        self.frames = []
        self.cv = threading.Condition()
        self.conn = None
        self.done = threading.Event()

    def accept(self):
        raw, _ = self.sock.accept()
        self.conn = self.ctx.wrap_socket(raw, server_side=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        data = b""
        while True:
            try:
                chunk = self.conn.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            data += chunk
            while len(data) >= 24:
                (length,) = struct.unpack(">I", data[8:12])
                if len(data) < 24 + length:
                    break
                with self.cv:
                    self.frames.append((data[5], data[24:24 + length]))
                    self.cv.notify_all()
                data = data[24 + length:]

    def send(self, ftype, payload):
        with self.cv:
            self.conn.sendall(frame(ftype, payload, epoch=1))

    def beat(self):
        """HEARTBEAT every second, as the primary, so the link stays up."""
        def run():
            while not self.done.wait(1.0):
                try:
                    self.send(FRAME_HEARTBEAT, struct.pack(">QqBI", 0, int(time.time() * 1e6), 1, 0))
                except OSError:
                    return
        self.send(FRAME_HEARTBEAT, struct.pack(">QqBI", 0, int(time.time() * 1e6), 1, 0))
        threading.Thread(target=run, daemon=True).start()

    def wait(self, pred, timeout=30, what="a frame"):
        with self.cv:
            ok = self.cv.wait_for(lambda: any(pred(t, p) for t, p in self.frames), timeout)
            assert ok, f"no {what} from cloud"
            for i, (t, p) in enumerate(self.frames):
                if pred(t, p):
                    del self.frames[i]
                    return p

    def result(self, seq):
        p = self.wait(lambda t, p: t == FRAME_VERIFY and parse_verify(p)["op"] == RESULT
                      and parse_verify(p)["seq"] == seq, what=f"RESULT {seq}")
        return parse_verify(p)

    def close(self):
        self.done.set()
        if self.conn:
            self.conn.close()
        self.sock.close()


def hello(cluster_name):
    return (struct.pack(">H", harness.RELAY_PROTO_VERSION) + wire_str(cluster_name)
            + wire_str("onprem")
            + struct.pack(">H", 1) + wire_str("app") + struct.pack(">QQQ", 0, 0, 0))


# (what, QUERY fields, the reason's words)
REFUSED = [
    ("sql text", dict(kind=Q_CHECKSUM, schema="public", table="items",
                      text="SELECT pg_read_file('/etc/passwd')"), "statement text"),
    ("terminate", dict(kind=Q_SETTINGS, text="SELECT pg_terminate_backend(pid) FROM pg_stat_activity"),
     "statement text"),
    ("origin", dict(kind=Q_SETTINGS,
                    text="SELECT pg_replication_origin_advance('strait_app', 'FFFFFFFF/0')"),
     "statement text"),
    ("catalog", dict(kind=Q_CHECKSUM, schema="pg_catalog", table="pg_authid"), "is not replicated"),
    ("strait's record", dict(kind=Q_CHECKSUM, schema="strait", table="sync_table"), "is not replicated"),
    ("injected table", dict(kind=Q_CHECKSUM, schema="public",
                            table="items\" AS t; SELECT pg_read_file('/etc/passwd') --"),
     "no table"),
    ("function as key", dict(kind=Q_ROWS, schema="public", table="items",
                             keys=["pg_read_file('/etc/passwd')"]), "no column"),
    ("path as table", dict(kind=Q_CHECKSUM, schema="public", table="/etc/passwd"), "no table"),
    ("unknown kind", dict(kind=42, schema="public", table="items"), "unknown kind"),
]


def test_fake_peer_verify_requests_are_refused(tmp_path, pg_factory, straitd_factory):
    dst = pg_factory("cloud")
    dst.sql("CREATE TABLE items (id int PRIMARY KEY, name text)")
    dst.sql("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g")
    stream = {"name": "app", "from": "onprem", "to": "cloud", "publication": "strait_app",
              "initial_sync": False}
    cluster = harness.Cluster(tmp_path, harness.loopback_sites([None, dst]), [stream])
    fake = FakeSource(cluster)
    try:
        cloud = straitd_factory(cluster.path("cloud"), site="cloud")
        fake.accept()
        fake.wait(lambda t, p: t == FRAME_HELLO, what="HELLO")
        fake.send(FRAME_HELLO, hello(cluster.cluster_cfg["cluster"]))
        fake.beat()
        generation = 0      # cloud's HELLO named the stream: generation 0 of this link

        # a snapshot at a point, as a real verify takes it
        fake.send(FRAME_VERIFY, verify_payload(HOLD, lsn=0x10000000))
        fake.send(FRAME_VERIFY, verify_payload(MARK, lsn=0x10000000, generation=generation))
        ready = parse_verify(fake.wait(lambda t, p: t == FRAME_VERIFY
                                       and parse_verify(p)["op"] == READY, what="READY"))
        assert ready["ok"] == 1, ready

        seq = 0
        for what, fields, reason in REFUSED:
            seq += 1
            fake.send(FRAME_VERIFY, verify_payload(QUERY, seq=seq, **fields))
            r = fake.result(seq)
            assert r["ok"] == 0 and reason in r["text"], (what, r)
            pattern = r'stream "app": verify 1: refused a request from "onprem": .*' + re.escape(reason)
            wait_until(lambda: re.search(pattern, cloud.log_text()), what=f"the log of {what}")

        # the snapshot is still open: requests the comparison makes are answered
        seq += 1
        fake.send(FRAME_VERIFY, verify_payload(QUERY, seq=seq, kind=Q_SETTINGS))
        assert fake.result(seq)["ok"] == 1
        seq += 1
        fake.send(FRAME_VERIFY, verify_payload(QUERY, seq=seq, kind=Q_CHECKSUM, schema="public",
                                               table="items", keys=["id"], rng=1, params=["50"]))
        r = fake.result(seq)
        assert r["ok"] == 1 and r["values"][0] == "50", r
        fake.send(FRAME_VERIFY, verify_payload(END))

        # nothing ran: no file read, no session ended, the origin untouched
        assert "root:" not in cloud.log_text()
        assert dst.sql("SELECT count(*) FROM pg_replication_origin_status "
                       "WHERE remote_lsn >= 'FFFFFFFF/0'")[0][0] == 0
        # the stream was not restarted: no second RESUME, the sink still waits on onprem
        assert not any(t == FRAME_RESUME for t, _ in fake.frames)
        rep = [r for r in cloud.status()["replication"] if r["role"] == "sink"]
        assert rep and not rep[0].get("last_error"), rep
        assert cloud.alive()
    finally:
        fake.close()
