#!/usr/bin/env python3
"""The presence benchmark: the native module against its Lua-scripted peer and plain SET/HSET,
measured side by side on one server in one run. scripts/bench.sh builds the module and calls this.

Throughput comes from redis-benchmark (50 clients, pipelines of 1 and 16); loading, memory, mass
expiry and idle cost are driven here over plain sockets (a minimal RESP client, no dependencies).
"""

import argparse
import csv
import io
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAY = 24 * 3600 * 1000
RETENTION = 30 * DAY
LONG_TTL = 3600 * 1000  # devices that must not expire during the run


# --- a minimal RESP2 client -------------------------------------------------------------------

def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = self.buf[self.pos:end]
                self.pos = end + 2
                return line
            self._fill()

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            data = self.buf[self.pos:self.pos + n]
            self.pos += n + 2
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("bad reply %r" % line)

    def call(self, *args):
        self.sock.sendall(encode(*args))
        reply = self.read()
        if isinstance(reply, RuntimeError):
            raise reply
        return reply

    def pipeline(self, commands, batch=5000):
        """Sends encoded commands in batches; returns the number of error replies."""
        errors = 0
        pending = []
        for c in commands:
            pending.append(c)
            if len(pending) == batch:
                errors += self._flush(pending)
                pending = []
        if pending:
            errors += self._flush(pending)
        return errors

    def _flush(self, pending):
        self.sock.sendall(b"".join(pending))
        return sum(isinstance(self.read(), RuntimeError) for _ in pending)


def info(conn, section):
    text = conn.call("INFO", section).decode()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def used_memory(conn):
    return int(info(conn, "memory")["used_memory"])


# --- the server -------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, module, redis_server="redis-server"):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="presence-bench-")
        self.proc = subprocess.Popen(
            [redis_server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "log"),
             "--enable-debug-command", "local", "--loadmodule", module],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                self.conn = Conn(self.port)
                self.conn.call("PING")
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the server did not start; see %s/log" % self.dir)
                time.sleep(0.05)
        self.version = info(self.conn, "server")["redis_version"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# --- measurements -----------------------------------------------------------------------------

def benchmark(port, args, requests, pipeline, keyspace, clients=50):
    """One redis-benchmark run; returns (requests per second, p50 ms, p99 ms)."""
    cmd = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests), "-P", str(pipeline),
           "-r", str(keyspace), "--csv"] + [str(a) for a in args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    header, row = rows[0], rows[-1]
    values = dict(zip(header, row))
    return float(values["rps"]), float(values["p50_latency_ms"]), float(values["p99_latency_ms"])


def script_sha(conn, name):
    return conn.call("SCRIPT", "LOAD", (HERE / name).read_text()).decode()


def load_native(conn, prefix, first, count, device="d1", ttl=LONG_TTL):
    return conn.pipeline(encode("PRESENCE.ONLINE", "%s%012d" % (prefix, i), device, "TTL", ttl)
                         for i in range(first, first + count))


def load_lua(conn, sha, prefix, first, count, device="d1", ttl=LONG_TTL):
    return conn.pipeline(encode("EVALSHA", sha, 0, "%s%012d" % (prefix, i), device, ttl, RETENTION)
                         for i in range(first, first + count))


def throughput(module, sizes, pipeline):
    """Every operation, native and scripted, at one pipeline depth, on a fresh server holding
    `users` users both ways; returns table rows. Connecting new devices comes last, as it grows
    the keyspace, and with a long TTL, so no sweep runs during the measurements."""
    server = Server(module)
    shas = {name: script_sha(server.conn, name + ".lua") for name in ("online", "heartbeat", "get", "bulk")}
    errors = load_native(server.conn, "user:", 0, sizes["users"])
    errors += load_lua(server.conn, shas["online"], "user:", 0, sizes["users"])
    assert errors == 0, "loading failed"
    port, users, n = server.port, sizes["users"], sizes["requests"]
    bulk_users = ["user:__rand_int__"] * 100
    ops = [
        ("SET", ["SET", "key:__rand_int__", "v"], users, 1),
        ("HSET", ["HSET", "hkey:__rand_int__", "f", "v"], users, 1),
        ("HEARTBEAT native", ["PRESENCE.HEARTBEAT", "user:__rand_int__", "d1"], users, 1),
        ("HEARTBEAT Lua", ["EVALSHA", shas["heartbeat"], 0, "user:__rand_int__", "d1", LONG_TTL,
                           RETENTION], users, 1),
        ("GET native", ["PRESENCE.GET", "user:__rand_int__"], users, 1),
        ("GET Lua", ["EVALSHA", shas["get"], 0, "user:__rand_int__"], users, 1),
        ("BULK 100 native", ["PRESENCE.BULK"] + bulk_users, users, 100),
        ("BULK 100 Lua", ["EVALSHA", shas["bulk"], 0] + bulk_users, users, 100),
        ("HGETALL (per user)", ["HGETALL", "presence:{user:__rand_int__}"], users, 1),
        ("ONLINE new device native", ["PRESENCE.ONLINE", "new:__rand_int__", "d1", "TTL", LONG_TTL],
         100_000_000, 1),
        ("ONLINE new device Lua", ["EVALSHA", shas["online"], 0, "new:__rand_int__", "d1", LONG_TTL,
                                   RETENTION], 100_000_000, 1),
    ]
    rows = {}
    for name, args, keyspace, users_per_call in ops:
        requests = n if users_per_call == 1 else max(n // 20, 100)
        p = pipeline
        if name.startswith("HGETALL"):
            p = 100 if pipeline == 16 else 1  # the scripted BULK alternative: 100 pipelined
        rps, p50, p99 = benchmark(port, args, requests, p, keyspace)
        rows[(name, pipeline)] = (rps * users_per_call, p50, p99)
    server.stop()
    return server.version, rows


def rooms(module, sizes):
    """Rooms, native and scripted, each on a fresh server holding `memory_users` users in the
    FastAPI shape (everyone listed, each user in one of 100 zones and one of 10 orgs): memory per
    user; memory per further membership, in rooms of a thousand members and in one room of every
    user; JOIN and LEAVE against a refreshing ONLINE; the first page and the count of the room of
    every user. Returns {(measure, kind): value}."""
    n, out = sizes["memory_users"], {}
    uid = "user:%012d"
    for kind in ("native", "Lua"):
        server = Server(module)
        conn = server.conn
        shas = {name: script_sha(conn, name + ".lua") for name in ("online", "join", "leave")}

        def join(i, room):
            if kind == "native":
                return encode("PRESENCE.JOIN", uid % i, "d1", room)
            return encode("EVALSHA", shas["join"], 0, uid % i, "d1", room)

        base = used_memory(conn)
        if kind == "native":
            errors = conn.pipeline(
                encode("PRESENCE.ONLINE", uid % i, "d1", "TTL", LONG_TTL, "SCOPE",
                       "zone:%d" % (i % 100), "org:%d" % (i % 10)) for i in range(n))
        else:
            errors = load_lua(conn, shas["online"], "user:", 0, n)
            errors += conn.pipeline(join(i, "zone:%d" % (i % 100)) for i in range(n))
            errors += conn.pipeline(join(i, "org:%d" % (i % 10)) for i in range(n))
        shaped = used_memory(conn)
        errors += conn.pipeline(join(i, "team:%d" % (i % 1000)) for i in range(n))
        teams = used_memory(conn)
        errors += conn.pipeline(join(i, "hall") for i in range(n))
        hall = used_memory(conn)
        assert errors == 0, "loading failed"
        if kind == "native":
            # A restart's cost: DEBUG RELOAD saves and loads the RDB, then the module rebuilds
            # its listings (the room index from the records), which it logs.
            start = time.perf_counter()
            conn.call("DEBUG", "RELOAD")
            out[("restart (DEBUG RELOAD: save, load, rebuild), s", kind)] = time.perf_counter() - start
            with open(os.path.join(server.dir, "log")) as log:
                rebuilt = [line for line in log if "listings rebuilt from the keys in" in line]
            out[("of which rebuilding the listings, ms", kind)] = float(
                rebuilt[-1].split(" in ")[1].split(" ms")[0])
        out[("bytes per user, FastAPI shape", kind)] = (shaped - base) / n
        out[("bytes per further membership, rooms of %d" % (n // 1000), kind)] = (teams - shaped) / n
        out[("bytes per further membership, one room of %d" % n, kind)] = (hall - teams) / n

        page = (["PRESENCE.LIST", "SCOPE", "hall", "LIMIT", "100"] if kind == "native"
                else ["ZREVRANGE", "lua:room:hall", "0", "99", "WITHSCORES"])
        count = ["PRESENCE.COUNT", "SCOPE", "hall"] if kind == "native" else ["ZCARD", "lua:room:hall"]
        for name, call in (("first page of 100, room of %d" % n, page),
                           ("count, room of %d" % n, count)):
            # The server's own time per call (INFO commandstats), and the round trip through
            # this script's client, whose parsing of a reply of 100 rows is most of it.
            conn.call("CONFIG", "RESETSTAT")
            took = []
            for _ in range(200):
                start = time.perf_counter()
                conn.call(*call)
                took.append((time.perf_counter() - start) * 1000)
            stats = info(conn, "commandstats")["cmdstat_" + call[0].lower()]
            usec = float(stats.split("usec_per_call=")[1].split(",")[0])
            out[(name + ", server ms per call", kind)] = usec / 1000
            out[(name + ", client round trip, median ms", kind)] = sorted(took)[len(took) // 2]
            # The same through redis-benchmark's C client, one connection: a round trip whose
            # client barely parses.
            _, p50, _ = benchmark(server.port, call, 500, 1, 1, clients=1)
            out[(name + ", C client round trip, median ms", kind)] = p50

        online = (["PRESENCE.ONLINE", "user:__rand_int__", "d1", "TTL", LONG_TTL] if kind == "native"
                  else ["EVALSHA", shas["online"], 0, "user:__rand_int__", "d1", LONG_TTL, RETENTION])
        joins = (["PRESENCE.JOIN", "user:__rand_int__", "d1", "room:__rand_int__"] if kind == "native"
                 else ["EVALSHA", shas["join"], 0, "user:__rand_int__", "d1", "room:__rand_int__"])
        leaves = (["PRESENCE.LEAVE", "user:__rand_int__", "d1", "hall"] if kind == "native"
                  else ["EVALSHA", shas["leave"], 0, "user:__rand_int__", "d1", "hall"])
        for pipeline in (1, 16):
            for name, args in (("ONLINE (refresh)", online), ("JOIN", joins), ("LEAVE", leaves)):
                rps, _, _ = benchmark(server.port, args, sizes["requests"] // 2, pipeline, n)
                out[("%s ops/s, pipeline %d" % (name, pipeline), kind)] = rps
        server.stop()
    return out


def mass_expiry(server, sizes):
    """`expiring` devices pass their deadline together among `users` online; returns the time
    until the last offline event arrived, and the worst PING round trip meanwhile."""
    conn, count = server.conn, sizes["expiring"]
    conn.call("CONFIG", "SET", "presence.sweep-interval", 60000)
    load_native(conn, "gone:", 0, count, ttl=1000)
    last = "gone:%012d" % (count - 1)
    while conn.call("PRESENCE.GET", last)[3] != b"offline":
        time.sleep(0.05)
    sub = Conn(server.port)
    sub.sock.sendall(encode("SUBSCRIBE", "presence:events"))
    sub.read()
    # The PING client runs in a process of its own, so this one's work cannot delay it.
    stop = multiprocessing.Event()
    worst = multiprocessing.Value("d", 0.0)
    pinger = multiprocessing.Process(target=ping_loop, args=(server.port, stop, worst))
    pinger.start()
    time.sleep(0.2)
    start = time.perf_counter()
    conn.call("CONFIG", "SET", "presence.sweep-interval", 100)
    # Only offline events come on the channel now: count messages in the raw stream (cheaply, so
    # this process takes little CPU from the server and the PING client).
    marker = b"$7\r\nmessage\r\n"
    received, tail = 0, sub.buf[sub.pos:]
    received += tail.count(marker)
    tail = tail[-(len(marker) - 1):]
    while received < count:
        chunk = sub.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data = tail + chunk
        received += data.count(marker)
        tail = data[-(len(marker) - 1):]
    took = time.perf_counter() - start
    stop.set()
    pinger.join()
    return took, worst.value


def ping_loop(port, stop, worst):
    conn = Conn(port)
    while not stop.is_set():
        t = time.perf_counter()
        conn.call("PING")
        elapsed = time.perf_counter() - t
        if elapsed > worst.value:
            worst.value = elapsed
        time.sleep(0.001)


def idle_cpu(server, seconds):
    conn = server.conn
    before = info(conn, "cpu")
    time.sleep(seconds)
    after = info(conn, "cpu")
    used = sum(float(after[k]) - float(before[k]) for k in ("used_cpu_sys", "used_cpu_user"))
    return 100.0 * used / seconds


def cluster_scaling(module, smoke):
    """HEARTBEAT throughput on one server and across the 3 masters of a local cluster
    (scripts/cluster.sh: 3 masters, 3 replicas). redis-benchmark routes cluster commands by a
    `{tag}` in the key, which it replaces with one hash tag per node: so that both sides compare
    alike, the single server's users share one hash tag too (one slot)."""
    keyspace, requests = (2_000, 20_000) if smoke else (100_000, 2_000_000)
    user = "user:{tag}:__rand_int__"

    def run(port, cluster, pipeline, n):
        cmd = ["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(n), "-P", str(pipeline),
               "-r", str(keyspace), "--csv"] + (["--cluster"] if cluster else []) + \
              ["PRESENCE.HEARTBEAT", user, "d1", "TTL", str(LONG_TTL)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
        return float(rows[-1][1])

    def measure(port, cluster):
        # The first pass registers (almost) every device; the measured ones refresh them.
        run(port, cluster, 16, keyspace * 6)
        return {p: run(port, cluster, p, requests if p == 16 else requests // 4) for p in (1, 16)}

    server = Server(module)
    single = measure(server.port, False)
    server.stop()
    base = free_port()
    while base > 50_000:
        base = free_port()
    script = str(HERE.parent / "scripts" / "cluster.sh")
    env = dict(os.environ, PRESENCE_MODULE=module)
    clusters = {}
    for replicas in (0, 1):
        directory = tempfile.mkdtemp(prefix="presence-bench-cluster-")
        os.rmdir(directory)
        subprocess.run(["bash", script, "start", "--port", str(base), "--dir", directory,
                        "--replicas", str(replicas)], check=True, env=env, stdout=subprocess.DEVNULL)
        try:
            clusters[replicas] = measure(base, True)
        finally:
            subprocess.run(["bash", script, "stop", "--dir", directory], check=False)
    print("| HEARTBEAT of a connected device, 50 clients | pipeline 1 | pipeline 16 |")
    print("|---|---|---|")
    print("| one server | %.0f/s | %.0f/s |" % (single[1], single[16]))
    for replicas, label in ((0, "3 masters"), (1, "3 masters with a replica each")):
        spread = clusters[replicas]
        print("| cluster, %s | %.0f/s (%.2f×) | %.0f/s (%.2f×) |" % (
            label, spread[1], spread[1] / single[1], spread[16], spread[16] / single[16]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--cluster", action="store_true",
                        help="only the cluster scaling figures (one server next to a local cluster)")
    parser.add_argument("--rooms", action="store_true",
                        help="only the rooms figures (a fresh server per layout)")
    args = parser.parse_args()
    if args.cluster:
        print("presence cluster benchmark, %s, %d cores, %s" % (
            time.strftime("%Y-%m-%d"), os.cpu_count(), "smoke run" if args.smoke else "full run"))
        cluster_scaling(args.module, args.smoke)
        return 0
    if args.smoke:
        sizes = dict(users=10_000, requests=2_000, memory_users=10_000, extra=1_000,
                     expiring=1_000, idle=1)
    else:
        sizes = dict(users=100_000, requests=400_000, memory_users=1_000_000, extra=100_000,
                     expiring=100_000, idle=10)

    print("presence benchmark, %s, %d cores, %s" % (
        time.strftime("%Y-%m-%d"), os.cpu_count(), "smoke run" if args.smoke else "full run"))
    if args.rooms:
        print_rooms(args.module, sizes)
        return 0

    # Throughput: native and scripted layouts side by side on one server per pipeline depth.
    rows = {}
    for pipeline in (1, 16):
        version, measured = throughput(args.module, sizes, pipeline)
        rows.update(measured)
    print("server: Redis %s; %d users both ways, 50 clients" % (version, sizes["users"]))

    print()
    print("| operation | pipeline | ops/s (users/s for BULK) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for (name, pipeline), (rps, p50, p99) in sorted(rows.items(), key=lambda r: r[0][1]):
        p = 100 if name.startswith("HGETALL") and pipeline == 16 else pipeline
        print("| %s | %d | %.0f | %.3f | %.3f |" % (name, p, rps, p50, p99))
    print()
    print("| ratio | pipeline 1 | pipeline 16 |")
    print("|---|---|---|")

    def ratio(a, b):
        return " | ".join("%.2f" % (rows[(a, p)][0] / rows[(b, p)][0]) for p in (1, 16))

    print("| HEARTBEAT native / Lua | %s |" % ratio("HEARTBEAT native", "HEARTBEAT Lua"))
    print("| HEARTBEAT native / SET | %s |" % ratio("HEARTBEAT native", "SET"))
    print("| ONLINE native / Lua | %s |" % ratio("ONLINE new device native", "ONLINE new device Lua"))
    print("| GET native / Lua | %s |" % ratio("GET native", "GET Lua"))
    print("| BULK native / Lua | %s |" % ratio("BULK 100 native", "BULK 100 Lua"))
    print("| BULK native / pipelined HGETALL (1 and 100 deep) | %s |" % ratio("BULK 100 native", "HGETALL (per user)"))
    hb, st = rows[("HEARTBEAT native", 1)], rows[("SET", 1)]
    print("| unpipelined p99 HEARTBEAT / SET | %.2f (%.3f / %.3f ms) | |" % (hb[2] / st[2], hb[2], st[2]))

    # Memory: a fresh server per layout.
    print()
    server = Server(args.module)
    base = used_memory(server.conn)
    n = sizes["memory_users"]
    load_native(server.conn, "user:", 0, n)
    one = used_memory(server.conn)
    load_native(server.conn, "user:", 0, sizes["extra"], device="d2")
    two = used_memory(server.conn)
    native_user = (one - base) / n
    native_device = (two - one) / sizes["extra"]

    # Mass expiry and idle cost, with the million users online.
    took, worst_ping = mass_expiry(server, sizes)
    idle = idle_cpu(server, sizes["idle"])
    server.stop()

    server = Server(args.module)
    sha = script_sha(server.conn, "online.lua")
    base = used_memory(server.conn)
    load_lua(server.conn, sha, "user:", 0, n)
    one = used_memory(server.conn)
    load_lua(server.conn, sha, "user:", 0, sizes["extra"], device="d2")
    two = used_memory(server.conn)
    server.stop()
    lua_user, lua_device = (one - base) / n, (two - one) / sizes["extra"]

    print("| memory at %d users | native | Lua |" % n)
    print("|---|---|---|")
    print("| bytes per online user, one device, no META | %.0f | %.0f |" % (native_user, lua_user))
    print("| bytes per extra device | %.0f | %.0f |" % (native_device, lua_device))
    print()
    print("| mass expiry and idle cost, %d users online | |" % n)
    print("|---|---|")
    print("| %d devices expiring together: last offline event after | %.0f ms |" % (sizes["expiring"], took * 1000))
    print("| worst PING round trip meanwhile | %.2f ms |" % (worst_ping * 1000))
    print("| idle server CPU over %d s, nothing expiring | %.2f %% of a core |" % (sizes["idle"], idle))

    # Rooms, in the shape of the FastAPI presence manager the module replaces.
    print_rooms(args.module, sizes)


def print_rooms(module, sizes):
    measured = rooms(module, sizes)
    print()
    print("| rooms, %d users | native | Lua |" % sizes["memory_users"])
    print("|---|---|---|")
    for name in dict.fromkeys(name for name, _ in measured):
        form = "%.3f" if " ms" in name or name.endswith(" s") else "%.0f"
        native, lua = (measured.get((name, kind)) for kind in ("native", "Lua"))
        print("| %s | %s | %s |" % (name, form % native, "–" if lua is None else form % lua))


if __name__ == "__main__":
    sys.exit(main())
