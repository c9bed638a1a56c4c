#!/usr/bin/env python3
"""probe.py: readiness probes for compose/local/up.sh (Python standard library only).

  probe.py kafka HOST PORT      ApiVersions + Metadata request; ready when >= 1 broker is listed
  probe.py cql HOST PORT        CQL v4 OPTIONS/STARTUP/QUERY of system.local; ready on a row

Exit status 0 and one line on stdout when the server really serves clients, 1 otherwise
(the reason goes to stderr).
"""

import socket
import struct
import sys

TIMEOUT = 5.0


class ProbeError(Exception):
    pass


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by server")
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, data):
        self.data = data
        self.off = 0

    def unpack(self, fmt):
        vals = struct.unpack_from(fmt, self.data, self.off)
        self.off += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self, nullable=False):  # int16 length prefix (Kafka and CQL [string])
        n = self.unpack(">h")
        if n < 0:
            if nullable:
                return None
            raise ProbeError("unexpected null string")
        s = self.data[self.off:self.off + n].decode("utf-8", "replace")
        self.off += n
        return s

    def bytes_(self):  # int32 length prefix (CQL [bytes])
        n = self.unpack(">i")
        if n < 0:
            return None
        b = self.data[self.off:self.off + n]
        self.off += n
        return b


# ---------------------------------------------------------------- Kafka

def kafka(host, port):
    with socket.create_connection((host, port), TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)

        def call(api_key, version, corr, body):
            client = b"courier-probe"
            msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
            sock.sendall(struct.pack(">i", len(msg)) + msg)
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            data = recv_exact(sock, size)
            if struct.unpack_from(">i", data, 0)[0] != corr:
                raise ProbeError("correlation id mismatch")
            return Reader(data[4:])

        # ApiVersions v0: every broker answers it.
        r = call(18, 0, 1, b"")
        err, count = r.unpack(">hi")
        if err:
            raise ProbeError(f"ApiVersions error code {err}")
        versions = {}
        for _ in range(count):
            key, lo, hi = r.unpack(">hhh")
            versions[key] = (lo, hi)
        if 3 not in versions:
            raise ProbeError("broker lists no Metadata API")
        lo, hi = versions[3]
        v = min(hi, 8)  # v4..v8 share one non-flexible layout
        if v < max(lo, 4):
            raise ProbeError(f"no Metadata version in 4..8 (broker: {lo}..{hi})")

        body = struct.pack(">i?", -1, False)  # all topics, no auto-creation
        if v >= 8:
            body += struct.pack(">??", False, False)
        r = call(3, v, 2, body)
        r.unpack(">i")  # throttle_time_ms
        brokers = []
        for _ in range(r.unpack(">i")):
            node = r.unpack(">i")
            bhost = r.string()
            bport = r.unpack(">i")
            r.string(nullable=True)  # rack
            brokers.append(f"{node}@{bhost}:{bport}")
        cluster_id = r.string(nullable=True)
        controller = r.unpack(">i")
        if not brokers:
            raise ProbeError("metadata lists no broker yet")
        if controller < 0:
            raise ProbeError("no active controller yet")
        return f"kafka ok: cluster_id={cluster_id} brokers={','.join(brokers)} controller={controller} metadata_v{v}"


# ---------------------------------------------------------------- CQL

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_OPTIONS, OP_SUPPORTED, OP_QUERY, OP_RESULT = 0x05, 0x06, 0x07, 0x08


def cql_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def cql(host, port):
    with socket.create_connection((host, port), TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)

        def request(stream, opcode, body):
            sock.sendall(struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body)
            version, _flags, rstream, op, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
            data = recv_exact(sock, length)
            if version != 0x84:
                raise ProbeError(f"unexpected response version 0x{version:02x}")
            if rstream != stream:
                raise ProbeError("stream id mismatch")
            r = Reader(data)
            if op == OP_ERROR:
                code = r.unpack(">i")
                raise ProbeError(f"server error 0x{code:04x}: {r.string()}")
            return op, r

        op, r = request(1, OP_OPTIONS, b"")
        if op != OP_SUPPORTED:
            raise ProbeError(f"OPTIONS answered with opcode {op}")
        supported = {}
        for _ in range(r.unpack(">H")):
            key = r.string()
            supported[key] = [r.string() for _ in range(r.unpack(">H"))]

        op, r = request(2, OP_STARTUP, struct.pack(">H", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0"))
        if op == OP_AUTHENTICATE:
            raise ProbeError(f"server wants authentication ({r.string()}); expected AllowAllAuthenticator")
        if op != OP_READY:
            raise ProbeError(f"STARTUP answered with opcode {op}")

        query = b"SELECT release_version FROM system.local"
        body = struct.pack(">i", len(query)) + query + struct.pack(">HB", 0x0001, 0)  # consistency ONE, no flags
        op, r = request(3, OP_QUERY, body)
        if op != OP_RESULT or r.unpack(">i") != 0x0002:
            raise ProbeError("system.local query did not return rows")
        flags, columns = r.unpack(">ii")
        global_spec = flags & 0x0001
        if global_spec:
            r.string()
            r.string()
        if flags & 0x0002:
            r.bytes_()
        if not flags & 0x0004:
            for _ in range(columns):
                if not global_spec:
                    r.string()
                    r.string()
                r.string()
                if r.unpack(">H") == 0x0000:  # custom type carries a class name
                    r.string()
        if r.unpack(">i") < 1:
            raise ProbeError("system.local returned no row")
        release = r.bytes_()
        release = release.decode() if release is not None else "?"
        return f"cql ok: release_version={release} cql_versions={','.join(supported.get('CQL_VERSION', []))}"


def main(argv):
    if len(argv) != 4 or argv[1] not in ("kafka", "cql"):
        print(__doc__, file=sys.stderr)
        return 2
    probe = kafka if argv[1] == "kafka" else cql
    try:
        print(probe(argv[2], int(argv[3])))
        return 0
    except (OSError, ProbeError, struct.error, UnicodeDecodeError) as exc:
        print(f"{argv[1]} not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
