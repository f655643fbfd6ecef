"""Fuzzing a live store over both protocols, plus every split point in-process.

Inputs are generated from a seed: valid RESP commands of the whole command table with
boundary numbers, option words and random arguments, the same mutated (bytes flipped,
inserted, deleted, duplicated, headers replaced by boundary lengths, truncated), Blink text
lines, Redis inline lines, and random bytes. They go to the store in sessions: one connection
gets a run of inputs cut into random-sized writes, then the client shuts its side down and
the store must answer what it can and close within :data:`HANG_DEADLINE` (else a hang). One
session in ten goes to a second, password-protected store (the pre-AUTH paths).

Before fuzzing, a sentinel key with a random name is set; no input can name it (any input
containing it, or a FLUSH command, is regenerated), so it must be unchanged afterwards. The
store must still answer, and its log must show no internal error.

Every split point: a sample of inputs is also fed to an in-process
:class:`~blinkstore_gunicorn.server.connection.StoreConnection` whole, then cut in two at every
offset, each on a fresh server: the replies must be byte for byte the same.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from dataclasses import dataclass, field

from bench.abuse.common import PASSWORD, Client, memory_kib, store
from bench.transport import InProcessTransport
from blinkstore_gunicorn.config import StoreSettings
from blinkstore_gunicorn.engine.hyperloglog import HyperLogLog
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands import COMMANDS
from blinkstore_gunicorn.server.connection import StoreConnection
from blinkstore_gunicorn.server.store import StoreServer
from blinkstore_gunicorn.storage.dump import dump_payload
from blinkstore_gunicorn.storage.rdb import Record

__all__ = ["FuzzReport", "Generator", "replies_whatever_the_split", "run_fuzz"]

#: Seconds the store has to finish a session after the client's EOF.
HANG_DEADLINE = 10.0
#: Commands no input may contain: the sentinel must survive.
FORBIDDEN = (b"flush",)
#: Commands whose replies depend on time or the process (left out of split comparisons).
NONDETERMINISTIC = frozenset(
    {
        "info", "command", "config", "bs.fetch", "randomkey", "zrandmember", "xinfo", "xpending",
        "blink.lock",  # its token is random
        "dump",  # a stream consumer's last-seen time is in its payload
    }
)  # fmt: skip
NUMBERS = (
    b"0", b"1", b"-1", b"2", b"10", b"100", b"1000000", b"00", b"+1", b" 1", b"1 ", b"0x10",
    b"1.5", b"-0", b"1e3", b"1e308", b"inf", b"-inf", b"nan", b"", b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775808", b"-9223372036854775809",
    b"18446744073709551616", b"99999999999999999999999",
)  # fmt: skip
#: Values the newer commands parse, so that fuzzing gets past their first checks: DUMP
#: payloads (RESTORE), HLL headers sparse, dense and cut short (PF*), Lua scripts using
#: ``struct`` and ``cmsgpack`` on their arguments (EVAL).
PAYLOADS = (
    dump_payload(Record(b"fz", b"string", b"fuzz", None)),
    dump_payload(Record(b"fz", b"list", [b"a", b"1"], None)),
    bytes(HyperLogLog().data),
    b"HYLL\x00\x00\x00\x00" + bytes(8 + 12288),
    b"HYLL\x01\x00\x00\x00" + bytes(8) + b"\x7f\xfe",
    b"return cmsgpack.unpack(ARGV[1])",
    b"return {struct.unpack(ARGV[1], ARGV[2])}",
    b"return cmsgpack.pack(struct.pack('>i4', #ARGV), KEYS)",
)
WORDS = (
    *PAYLOADS, b"REPLACE", b"ABSTTL", b"IDLETIME", b"FREQ", b"GETKEYS", b"GETKEYSANDFLAGS",
    b"EX", b"PX", b"EXAT", b"PXAT", b"NX", b"XX", b"GT", b"LT", b"GET", b"KEEPTTL",
    b"PERSIST", b"MATCH", b"COUNT", b"TYPE", b"LEASE", b"WAIT", b"AUTH", b"SETNAME",
    b"SETINFO", b"LIB-NAME", b"LIB-VER", b"ID", b"GETNAME", b"INFO", b"DOCS", b"LIST",
    b"ASYNC", b"SYNC", b"default", b"*", b"?", b"[a-", b"\\", b"string", b"3", b"2",
    b"WEIGHTS", b"AGGREGATE", b"SUM", b"MIN", b"MAX", b"WITHSCORES", b"LEFT", b"RIGHT",
    b"LIMIT", b"STORE", b"BY", b"ALPHA", b"DESC", b"#", b"fz:*", b"fz:*->f", b"nosort",
    b"IDX", b"LEN", b"MINMATCHLEN", b"WITHMATCHLEN", b"BIT", b"BYTE", b"AND", b"NOT",
    b"ENCODING", b"USAGE", b"SAMPLES", b"GROUP", b"STREAMS", b"NOACK", b"BLOCK", b">", b"$",
    b"CREATE", b"MKSTREAM", b"ENTRIESREAD", b"SETID", b"DESTROY", b"CREATECONSUMER",
    b"DELCONSUMER", b"IDLE", b"TIME", b"RETRYCOUNT", b"FORCE", b"JUSTID", b"LASTID", b"FULL",
    b"ENTRIESADDED", b"MAXDELETEDID", b"STREAM", b"GROUPS", b"CONSUMERS", b"0-0", b"1-1",
    b"-", b"+", b"(1-1", b"18446744073709551615-18446744073709551615",
    b"FROMMEMBER", b"FROMLONLAT", b"BYRADIUS", b"BYBOX", b"WITHCOORD", b"WITHDIST",
    b"WITHHASH", b"ANY", b"ASC", b"STOREDIST", b"CH", b"km", b"mi", b"ft", b"m", b"13.36",
    b"38.11", b"180", b"-85.05112878", b"85.05112879",
)  # fmt: skip
HEADERS = (
    b"*-1", b"*0", b"*-5", b"*1048577", b"*99999999999999999999", b"*abc", b"*", b"$-1",
    b"$0", b"$-2", b"$99999999999999999999", b"$1000000000", b"$x", b"$",
)  # fmt: skip
TEXT_VERBS = (b"GET", b"SET", b"DEL", b"DELETE", b"USAGE", b"STATS", b"QUIT", b"AUTH")


class Generator:
    """Seeded fuzz inputs; never one that names ``sentinel`` or flushes."""

    def __init__(self, seed: int, sentinel: bytes, commands: tuple[str, ...] = ()) -> None:
        self.rng = random.Random(seed)
        self.sentinel = sentinel
        chosen = commands or tuple(COMMANDS)
        self.names = sorted(name.encode() for name in chosen if b"flush" not in name.encode())

    def key(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.8:
            return b"fz:%d" % rng.randrange(256)
        return rng.randbytes(rng.randrange(0, 4))

    def arg(self) -> bytes:
        rng = self.rng
        pick = rng.random()
        if pick < 0.3:
            return self.key()
        if pick < 0.55:
            return rng.choice(NUMBERS)
        if pick < 0.75:
            return rng.choice(WORDS)
        if pick < 0.95:
            return rng.randbytes(rng.randrange(0, 32))
        return rng.randbytes(rng.randrange(32, 4096))

    def command(self) -> list[bytes]:
        """A RESP command: a real name (sometimes re-cased or unknown) and 0-6 arguments."""
        rng = self.rng
        name = rng.choice(self.names)
        if rng.random() < 0.1:
            name = bytes(c ^ 0x20 if rng.random() < 0.5 and chr(c).isalpha() else c for c in name)
        elif rng.random() < 0.03:
            name = rng.randbytes(rng.randrange(1, 12))
        args = [name]
        if rng.random() < 0.5 and name.lower() not in (b"ping", b"quit", b"dbsize"):
            args.append(self.key())
        args += [self.arg() for _ in range(rng.randrange(0, 6))]
        return args

    def resp_input(self) -> bytes:
        """One RESP input: valid (85%), mutated (12%) or random bytes."""
        rng = self.rng
        pick = rng.random()
        if pick < 0.85:
            return resp.encode_command(*self.command())
        if pick < 0.97:
            return self.mutate(resp.encode_command(*self.command()))
        return b"*" + rng.randbytes(rng.randrange(0, 256))

    def mutate(self, data: bytes) -> bytes:
        """One structural or byte-level change to ``data``."""
        rng = self.rng
        buffer = bytearray(data)
        at = rng.randrange(len(buffer))
        how = rng.randrange(6)
        if how == 0:
            buffer[at] = rng.randrange(256)
        elif how == 1:
            buffer[at:at] = rng.randbytes(rng.randrange(1, 8))
        elif how == 2:
            del buffer[at : at + rng.randrange(1, 8)]
        elif how == 3:
            end = min(len(buffer), at + rng.randrange(1, 16))
            buffer[at:at] = buffer[at:end]
        elif how == 4:
            lines = bytes(buffer).split(b"\r\n")
            index = rng.randrange(len(lines))
            lines[index] = rng.choice(HEADERS)
            return b"\r\n".join(lines)
        else:
            del buffer[at:]
        return bytes(buffer)

    def text_input(self) -> bytes:
        """One Blink text line: a verb with a key and value, a mangled one, or random bytes."""
        rng = self.rng
        pick = rng.random()
        end = rng.choice((b"\n", b"\r\n", b"\n", b" \n"))
        if pick < 0.7:
            verb = rng.choice(TEXT_VERBS)
            if rng.random() < 0.2:
                verb = verb.lower()
            parts = [verb]
            if rng.random() < 0.9:
                parts.append(self.key().replace(b"\n", b"") or b"k")
            if rng.random() < 0.5:
                parts.append(self.arg().replace(b"\n", b" "))
            return b" ".join(parts) + end
        if pick < 0.9:
            return rng.randbytes(rng.randrange(0, 512)).replace(b"*", b"+") + end
        return b" " * rng.randrange(0, 3) + end

    def inline_input(self) -> bytes:
        """One Redis inline command line."""
        args = self.command()
        return b" ".join(arg.replace(b"\n", b"").replace(b" ", b"") or b"x" for arg in args) + b"\n"

    def session(self, count: int) -> tuple[str, list[bytes]]:
        """A protocol and ``count`` inputs for one connection."""
        rng = self.rng
        kind = rng.choices(("resp", "text", "inline"), weights=(55, 30, 15))[0]
        make = {"resp": self.resp_input, "text": self.text_input, "inline": self.inline_input}
        inputs: list[bytes] = []
        while len(inputs) < count:
            data = make[kind]()
            if self.sentinel in data or any(word in data.lower() for word in FORBIDDEN):
                continue
            inputs.append(data)
        if kind == "inline":
            inputs[0] = b"PING\n"  # what makes the store pick the inline protocol
        elif kind == "text" and inputs[0][:1] == b"*":
            inputs[0] = b"USAGE\n"
        return kind, inputs


@dataclass
class FuzzReport:
    """Figures of one fuzzing run."""

    inputs: int = 0
    sessions: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)
    split_inputs: int = 0
    split_points: int = 0
    split_mismatches: list[bytes] = field(default_factory=list)
    crashes: int = 0
    hangs: list[bytes] = field(default_factory=list)
    internal_errors: int = 0
    sentinel_intact: bool = False
    store_answers: bool = False
    peak_rss_mib: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No crash, hang, internal error or split mismatch; sentinel intact; store answers."""
        return (
            self.crashes == 0
            and not self.hangs
            and self.internal_errors == 0
            and not self.split_mismatches
            and self.sentinel_intact
            and self.store_answers
        )

    def lines(self) -> list[str]:
        """The report as text."""
        protocols = ", ".join(f"{kind} {count}" for kind, count in self.by_protocol.items())
        return [
            f"fuzz: {self.inputs} inputs in {self.sessions} sessions ({protocols}) in"
            f" {self.seconds:.0f}s; {self.split_inputs} inputs also split at all"
            f" {self.split_points} offsets in-process",
            f"  crashes {self.crashes}, hangs {len(self.hangs)}, internal errors"
            f" {self.internal_errors}, split mismatches {len(self.split_mismatches)};"
            f" sentinel intact: {self.sentinel_intact}; store answers: {self.store_answers};"
            f" store peak RSS {self.peak_rss_mib:.0f} MiB",
            f"  verdict: {'PASS' if self.ok else 'FAIL'}",
        ]


def _send_session(path: str, inputs: list[bytes], rng: random.Random) -> bool:
    """Send ``inputs`` in random-sized writes, shut down, read to EOF; False on a hang."""
    data = b"".join(inputs)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(HANG_DEADLINE)
        sock.connect(path)
        sock.setblocking(True)
        position = 0
        try:
            while position < len(data):
                size = rng.choice((1, 2, 7, 64, 1024, 65536))
                sock.sendall(data[position : position + size])
                position += size
                _drain_available(sock)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return True  # the store closed first (a protocol error): fine
        deadline = time.monotonic() + HANG_DEADLINE
        try:
            while sock.recv(1 << 20):
                if time.monotonic() > deadline:
                    return False
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return True


def _drain_available(sock: socket.socket) -> None:
    """Read whatever replies are there already, so a long session cannot fill both buffers."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
        sock.settimeout(HANG_DEADLINE)


def _replies(parts: list[bytes]) -> bytes:
    server = StoreServer(
        StoreSettings(unix="/nonexistent", memory_limit=0), clock_ms=lambda: 10**12
    )
    connection = StoreConnection(server)
    transport = InProcessTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    for part in parts:
        if part:
            connection.data_received(part)
    connection.eof_received()
    return b"".join(transport.out)


def replies_whatever_the_split(data: bytes) -> int | None:
    """Feed ``data`` whole, then cut at every offset; the first offset whose replies differ,
    else None. Runs inside an event loop (deferred replies use it)."""

    async def check() -> int | None:
        whole = _replies([data])
        for offset in range(1, len(data)):
            if _replies([data[:offset], data[offset:]]) != whole:
                return offset
        return None

    return asyncio.run(check())


def _deterministic(generator: Generator) -> bytes:
    while True:
        _, inputs = generator.session(generator.rng.randrange(1, 4))
        data = b"".join(inputs)
        lowered = data.lower()
        if not any(name.encode() in lowered for name in NONDETERMINISTIC):
            return data


def run_fuzz(
    inputs: int = 1_000_000,
    split_inputs: int = 2000,
    seed: int = 13,
    commands: tuple[str, ...] = (),
) -> FuzzReport:
    """Run the fuzzer and return its figures; ``commands`` (default: all) are the names the
    valid inputs use."""
    report = FuzzReport()
    started = time.monotonic()
    sentinel = b"sentinel:" + os.urandom(16).hex().encode()
    sentinel_value = os.urandom(64)
    generator = Generator(seed, sentinel, commands)
    sender_rng = random.Random(seed + 1)
    with store("--memory-limit", "0") as open_store, store(password=PASSWORD) as locked:
        path, locked_path = open_store.unix_path, locked.unix_path
        assert path is not None and locked_path is not None
        client = Client(path)
        client.call("SET", sentinel, sentinel_value)
        while report.inputs < inputs:
            kind, session = generator.session(generator.rng.randrange(1, 200))
            target = locked_path if report.sessions % 10 == 9 else path
            if not _send_session(target, session, sender_rng):
                report.hangs.append(b"".join(session)[:4096])
            report.sessions += 1
            report.inputs += len(session)
            report.by_protocol[kind] = report.by_protocol.get(kind, 0) + len(session)
            if open_store.proc.poll() is not None or locked.proc.poll() is not None:
                report.crashes += 1
                break
        report.peak_rss_mib = memory_kib(open_store.pid, "VmHWM") / 1024
        try:
            client = Client(path)
            report.sentinel_intact = client.call("GET", sentinel) == sentinel_value
            report.store_answers = client.call("PING") == "PONG"
            Client(locked_path, PASSWORD).call("PING")
        except (OSError, RuntimeError):
            report.store_answers = False
        log = open_store.log_text() + locked.log_text()
        report.internal_errors = log.count("error while serving") + log.count("Traceback")
    for _ in range(split_inputs):
        data = _deterministic(generator)
        report.split_inputs += 1
        report.split_points += max(0, len(data) - 1)
        offset = replies_whatever_the_split(data)
        if offset is not None:
            report.split_mismatches.append(data)
    report.seconds = time.monotonic() - started
    return report
