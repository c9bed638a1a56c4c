#!/usr/bin/env python3
"""probe.py: readiness probes for compose/local/up.sh (Python standard library only).

  probe.py kafka HOST PORT      ApiVersions + Metadata request; ready when >= 1 broker is listed
  probe.py cql HOST PORT        CQL v4 OPTIONS/STARTUP/QUERY of system.local; ready on a row
  probe.py cql-exec HOST PORT   runs the CQL statements on stdin, one per line (up.sh's role setup)

Options for a secured server: --ca FILE (TLS, the server's certificate verified with that
CA), --user NAME and --password-file FILE (log in). `cql` with --ca but no user is ready
once the server asks for authentication.

Exit status 0 and one line on stdout when the server really serves clients, 1 otherwise
(the reason goes to stderr).
"""

import argparse
import base64
import hashlib
import hmac
import os
import socket
import ssl
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


def connect(host, port, ca):
    """A TCP connection, wrapped in TLS verified with the CA file when there is one."""
    sock = socket.create_connection((host, port), TIMEOUT)
    sock.settimeout(TIMEOUT)
    if ca is None:
        return sock
    ctx = ssl.create_default_context(cafile=ca)
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except (ssl.SSLError, OSError):
        sock.close()
        raise


def read_password(path):
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\r\n")


# ---------------------------------------------------------------- Kafka

def scram_sha512(user, password, exchange):
    """A SCRAM-SHA-512 login (RFC 5802) over `exchange(bytes) -> bytes`; checks the
    server's signature too, so a server without the credentials cannot pass."""
    nonce = base64.b64encode(os.urandom(24)).decode()
    first_bare = f"n={user},r={nonce}"
    server_first = exchange(("n,," + first_bare).encode()).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    if not attrs.get("r", "").startswith(nonce):
        raise ProbeError("SCRAM: the server's nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(hashlib.sha512(client_key).digest(), auth_message, "sha512").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    server_final = exchange(f"{without_proof},p={proof}".encode()).decode()
    server_key = hmac.new(salted, b"Server Key", "sha512").digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, "sha512").digest()).decode()
    if server_final != f"v={expected}":
        raise ProbeError(f"SCRAM: unexpected server signature {server_final!r}")


def kafka(host, port, ca=None, user=None, password=None):
    with connect(host, port, ca) as sock:
        corr = [0]

        def call(api_key, version, body):
            corr[0] += 1
            client = b"courier-probe"
            msg = struct.pack(">hhih", api_key, version, corr[0], len(client)) + client + body
            sock.sendall(struct.pack(">i", len(msg)) + msg)
            size = struct.unpack(">i", recv_exact(sock, 4))[0]
            data = recv_exact(sock, size)
            if struct.unpack_from(">i", data, 0)[0] != corr[0]:
                raise ProbeError("correlation id mismatch")
            return Reader(data[4:])

        # ApiVersions v0: every broker answers it, before any login too.
        r = call(18, 0, b"")
        err, count = r.unpack(">hi")
        if err:
            raise ProbeError(f"ApiVersions error code {err}")
        versions = {}
        for _ in range(count):
            key, lo, hi = r.unpack(">hhh")
            versions[key] = (lo, hi)

        how = ""
        if user is not None:
            # SaslHandshake v1 then SaslAuthenticate v1 (both non-flexible).
            mechanism = b"SCRAM-SHA-512"
            r = call(17, 1, struct.pack(">h", len(mechanism)) + mechanism)
            err = r.unpack(">h")
            if err:
                enabled = [r.string() for _ in range(r.unpack(">i"))]
                raise ProbeError(f"SaslHandshake error code {err} (broker enables {enabled})")

            def exchange(token):
                r = call(36, 1, struct.pack(">i", len(token)) + token)
                err = r.unpack(">h")
                message = r.string(nullable=True)
                if err:
                    raise ProbeError(f"SaslAuthenticate error code {err}: {message}")
                n = r.unpack(">i")
                return r.data[r.off:r.off + n]

            scram_sha512(user, password, exchange)
            how = f"TLS, logged in as {user}, "
        elif ca is not None:
            how = "TLS, "

        if 3 not in versions:
            raise ProbeError("broker lists no Metadata API")
        lo, hi = versions[3]
        v = min(hi, 8)  # v4..v8 share one non-flexible layout
        if v < max(lo, 4):
            raise ProbeError(f"no Metadata version in 4..8 (broker: {lo}..{hi})")

        body = struct.pack(">i?", -1, False)  # all topics, no auto-creation
        if v >= 8:
            body += struct.pack(">??", False, False)
        r = call(3, v, body)
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
        return f"kafka ok: {how}cluster_id={cluster_id} brokers={','.join(brokers)} controller={controller} metadata_v{v}"


# ---------------------------------------------------------------- CQL

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_OPTIONS, OP_SUPPORTED, OP_QUERY, OP_RESULT = 0x05, 0x06, 0x07, 0x08


def cql_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0F, 0x10
RESULT_ROWS = 0x0002


class Cql:
    """One CQL v4 connection: handshake, optional login, queries."""

    def __init__(self, host, port, ca=None):
        self.sock = connect(host, port, ca)
        self.stream = 0

    def close(self):
        self.sock.close()

    def request(self, opcode, body):
        self.stream += 1
        stream = self.stream
        self.sock.sendall(struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body)
        version, _flags, rstream, op, length = struct.unpack(">BBhBi", recv_exact(self.sock, 9))
        data = recv_exact(self.sock, length)
        if version != 0x84:
            raise ProbeError(f"unexpected response version 0x{version:02x}")
        if rstream != stream:
            raise ProbeError("stream id mismatch")
        r = Reader(data)
        if op == OP_ERROR:
            code = r.unpack(">i")
            raise ProbeError(f"server error 0x{code:04x}: {r.string()}")
        return op, r

    def startup(self, user=None, password=None):
        """OPTIONS, STARTUP and, when the server asks, a login; returns the CQL versions
        the server supports and whether it asked for authentication."""
        op, r = self.request(OP_OPTIONS, b"")
        if op != OP_SUPPORTED:
            raise ProbeError(f"OPTIONS answered with opcode {op}")
        supported = {}
        for _ in range(r.unpack(">H")):
            key = r.string()
            supported[key] = [r.string() for _ in range(r.unpack(">H"))]
        op, r = self.request(OP_STARTUP, struct.pack(">H", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0"))
        asked = op == OP_AUTHENTICATE
        if asked:
            authenticator = r.string()
            if user is None:
                return supported, authenticator
            token = b"\0" + user.encode() + b"\0" + password.encode()
            op, r = self.request(OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token)
            if op != OP_AUTH_SUCCESS:
                raise ProbeError(f"AUTH_RESPONSE answered with opcode {op}")
        elif op != OP_READY:
            raise ProbeError(f"STARTUP answered with opcode {op}")
        return supported, None

    def query(self, text):
        q = text.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0)  # consistency ONE, no flags
        op, r = self.request(OP_QUERY, body)
        if op != OP_RESULT:
            raise ProbeError(f"QUERY answered with opcode {op}")
        return r


def cql(host, port, ca=None, user=None, password=None):
    conn = Cql(host, port, ca)
    try:
        supported, authenticator = conn.startup(user, password)
        versions = ",".join(supported.get("CQL_VERSION", []))
        if authenticator is not None:
            return f"cql ok: TLS, asks for authentication ({authenticator}) cql_versions={versions}"
        r = conn.query("SELECT release_version FROM system.local")
        if r.unpack(">i") != RESULT_ROWS:
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
        how = f"TLS, logged in as {user}, " if user else ("TLS, " if ca else "")
        return f"cql ok: {how}release_version={release} cql_versions={versions}"
    finally:
        conn.close()


def cql_exec(host, port, ca=None, user=None, password=None):
    """Runs each non-empty line of stdin as one statement; stops at the first error."""
    conn = Cql(host, port, ca)
    try:
        _, authenticator = conn.startup(user, password)
        if authenticator is not None:
            raise ProbeError(f"the server asks for authentication ({authenticator}): pass --user")
        n = 0
        for line in sys.stdin:
            statement = line.strip().rstrip(";")
            if statement:
                conn.query(statement)
                n += 1
        return f"cql ok: {n} statement(s)"
    finally:
        conn.close()


def main(argv):
    parser = argparse.ArgumentParser(prog="probe.py", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["kafka", "cql", "cql-exec"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--ca", help="CA certificate (PEM): speak TLS and verify the server with it")
    parser.add_argument("--user", help="log in as this user")
    parser.add_argument("--password-file", help="the user's password")
    args = parser.parse_args(argv[1:])
    if (args.user is None) != (args.password_file is None):
        parser.error("--user and --password-file go together")
    try:
        password = read_password(args.password_file) if args.password_file else None
        probe = {"kafka": kafka, "cql": cql, "cql-exec": cql_exec}[args.kind]
        print(probe(args.host, args.port, args.ca, args.user, password))
        return 0
    except (OSError, ProbeError, struct.error, UnicodeDecodeError) as exc:
        print(f"{args.kind} not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
