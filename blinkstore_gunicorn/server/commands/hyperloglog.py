"""HyperLogLog commands (Redis's hyperloglog.c): PFADD, PFCOUNT, PFMERGE, PFDEBUG.

An HLL is a string (``engine/hyperloglog.py`` has its layout): every change goes through
``Dispatcher.store``, SET's write path, keeping the key's TTL. PFCOUNT of one key writes the
computed count back into the header as Redis does, so GET shows the same bytes on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blinkstore_gunicorn.engine.hyperloglog import (
    HEADER,
    REGISTERS,
    CorruptHLL,
    HyperLogLog,
    cached_count,
    count_registers,
    is_hll,
    sparse_op,
)
from blinkstore_gunicorn.protocol import resp
from blinkstore_gunicorn.server.commands.registry import command
from blinkstore_gunicorn.server.commands.replies import ONE, ZERO

if TYPE_CHECKING:
    from blinkstore_gunicorn.server.dispatch import Client, Dispatcher

__all__: list[str] = []

ERR_NOT_HLL = b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"
ERR_CORRUPT = b"-INVALIDOBJ Corrupted HLL object detected\r\n"


def _hll(d: Dispatcher, value: bytes | None) -> HyperLogLog | bytes | None:
    """The key's HLL (None when absent) or the error reply for a string that is not one."""
    if value is None:
        return None
    return HyperLogLog(value, d.hll_sparse_max_bytes) if is_hll(value) else ERR_NOT_HLL


@command("pfadd", -2, "write denyoom fast", (1, 1, 1))
def cmd_pfadd(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PFADD key [element...]``: 1 when a register changed (or the key was made), else 0."""
    hll = _hll(d, d.engine.peek(args[1]))
    if isinstance(hll, bytes):
        return hll
    updated = int(hll is None)
    if hll is None:
        hll = HyperLogLog(None, d.hll_sparse_max_bytes)
    try:
        for element in args[2:]:
            updated |= hll.add(element)
    except CorruptHLL:
        return ERR_CORRUPT
    if not updated:
        return ZERO
    hll.invalidate()
    return d.store(args[1], bytes(hll.data), keep_ttl=True) or ONE


def _merged(d: Dispatcher, keys: list[bytes]) -> tuple[list[int], bool] | bytes:
    """The largest value of each register over the keys' HLLs (absent keys are empty), and
    whether one of them is dense; or an error reply."""
    largest = [0] * REGISTERS
    dense = False
    for key in keys:
        hll = _hll(d, d.engine.get(key))
        if isinstance(hll, bytes):
            return hll
        if hll is None:
            continue
        dense = dense or hll.dense
        try:
            largest = list(map(max, largest, hll.registers()))
        except CorruptHLL:
            return ERR_CORRUPT
    return largest, dense


@command("pfcount", -2, "readonly may-replicate", (1, -1, 1))
def cmd_pfcount(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PFCOUNT key [key...]``: the estimated cardinality of the union of the HLLs."""
    if len(args) > 2:
        merged = _merged(d, args[1:])
        return merged if isinstance(merged, bytes) else resp.integer(count_registers(merged[0]))
    value = d.engine.get(args[1])
    if value is None:
        return ZERO
    if not is_hll(value):
        return ERR_NOT_HLL
    cached = cached_count(value)
    if cached is not None:  # the common case: no copy of the registers
        return resp.integer(cached)
    hll = HyperLogLog(value)
    try:
        cardinality = hll.count()
    except CorruptHLL:
        return ERR_CORRUPT
    hll.set_cache(cardinality)
    return d.store(args[1], bytes(hll.data), keep_ttl=True) or resp.integer(cardinality)


@command("pfmerge", -2, "write denyoom", (1, -1, 1))
def cmd_pfmerge(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PFMERGE destkey [sourcekey...]``: the union of the HLLs (the destination's included)
    into the destination, dense when a source is."""
    merged = _merged(d, args[1:])
    if isinstance(merged, bytes):
        return merged
    largest, dense = merged
    target = _hll(d, d.engine.peek(args[1]))
    hll = target if isinstance(target, HyperLogLog) else HyperLogLog(None, d.hll_sparse_max_bytes)
    try:
        if dense:
            hll.to_dense()
        for index, value in enumerate(largest):
            if value:
                hll.set(index, value)
    except CorruptHLL:
        return ERR_CORRUPT
    hll.invalidate()
    return d.store(args[1], bytes(hll.data), keep_ttl=True) or resp.OK


def _decoded(hll: HyperLogLog) -> bytes:
    """``PFDEBUG DECODE``: a sparse HLL's opcodes as Redis spells them (``z:``, ``Z:``, ``v:``)."""
    words = []
    data, at = hll.data, HEADER
    while at < len(data):
        size, run, value = sparse_op(data, at)
        if value:
            words.append(b"v:%d,%d" % (value, run))
        else:
            words.append(b"%s:%d" % (b"Z" if size == 2 else b"z", run))
        at += size
    return b" ".join(words)


@command("pfdebug", 3, "write denyoom admin", (2, 2, 1))
def cmd_pfdebug(d: Dispatcher, c: Client, args: list[bytes]) -> bytes:
    """``PFDEBUG GETREG|DECODE|ENCODING|TODENSE key``: Redis's look inside an HLL (GETREG and
    TODENSE make a sparse one dense, as Redis does)."""
    value = d.engine.peek(args[2])
    if value is None:
        return resp.error("ERR The specified key does not exist")
    if not is_hll(value):
        return ERR_NOT_HLL
    hll = HyperLogLog(value)
    sub = args[1].lower()
    if sub not in (b"getreg", b"decode", b"encoding", b"todense"):
        return resp.error(f"ERR Unknown PFDEBUG subcommand '{args[1].decode(errors='replace')}'")
    if sub == b"encoding":
        return resp.simple("dense" if hll.dense else "sparse")
    if sub == b"decode":
        return (
            resp.error("ERR HLL encoding is not sparse") if hll.dense else resp.bulk(_decoded(hll))
        )
    was_dense = hll.dense
    try:
        hll.to_dense()
    except CorruptHLL:
        return ERR_CORRUPT
    if not was_dense:
        failed = d.store(args[2], bytes(hll.data), keep_ttl=True)
        if failed:
            return failed
    if sub == b"todense":
        return ZERO if was_dense else ONE
    return resp.array(resp.integer(value) for value in hll.registers())
