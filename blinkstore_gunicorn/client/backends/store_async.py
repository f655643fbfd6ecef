"""The Blink store over RESP, asyncio: few connections, many coroutines, by pipelining.

Each connection is a :class:`~.store_pipeline.Pipeline` (an :class:`asyncio.Protocol`; its
module says how requests are batched, bounded and timed out). This module owns the slots:

* Fork and event-loop changes drop the connections (they belong to the old loop).
* Store restarts: connects are retried at a short fixed pace within the client timeout
  (``_outage.Reconnect``; reads only if ``wait_on_reads``), one attempt at a time per slot,
  and a request whose connection broke runs once more when ``_resp.may_resend`` allows.
* A store that leaves a request unanswered for the client timeout (stopped, stuck) is down:
  every connection to it is closed and calls fail at once until it answers a probe.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from blinkstore_gunicorn.client._leases_aio import AsyncLease, AsyncLockKeyLeases
from blinkstore_gunicorn.client._locks_aio import AsyncLockHold
from blinkstore_gunicorn.client.backends import _outage, _resp
from blinkstore_gunicorn.client.backends.store_async_locks import AsyncStoreLocks
from blinkstore_gunicorn.client.backends.store_feed import AsyncStoreFeed
from blinkstore_gunicorn.client.backends.store_pipeline import DEFAULT_MAX_IN_FLIGHT, Pipeline
from blinkstore_gunicorn.client.backends.store_ratelimit import AsyncStoreRateLimits
from blinkstore_gunicorn.client.errors import (
    CacheConnectionError,
    CacheTimeoutError,
    error_reply,
)
from blinkstore_gunicorn.client.stampede import Fetched
from blinkstore_gunicorn.client.url import CacheURL
from blinkstore_gunicorn.protocol import resp

__all__ = ["AsyncStoreBackend"]

#: Idle unshared connections kept for BS.FETCH / BS.LEASE.
SPARE_CONNECTIONS: Final = 8
#: A connection's protocol: a pipeline, or a subscription's feed.
P = TypeVar("P", bound=asyncio.Protocol)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class AsyncStoreBackend(_resp.StoreSettings, AsyncStoreRateLimits):
    """Asyncio RESP backend for ``unix://`` and ``tcp://`` URLs."""

    def __init__(
        self,
        url: CacheURL,
        *,
        timeout: float | None,
        connect_timeout: float | None,
        connections: int = 1,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        wait_on_reads: bool = True,
    ) -> None:
        super().__init__(url, timeout, connect_timeout, wait_on_reads)
        self._max_in_flight = max_in_flight
        self._slots: list[Pipeline | None] = [None] * connections
        self._opening: list[asyncio.Task[Pipeline | None] | None] = [None] * connections
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Unshared connections for requests the store may park (BS.FETCH): a parked
        #: request would hold up every reply pipelined behind it.
        self._spare: list[Pipeline] = []
        self._lock_keys: AsyncLockKeyLeases | None = None
        _track_for_fork(self)

    # -- connections -----------------------------------------------------------------------

    def _forget(self) -> None:
        # After a fork or with a new event loop the old transports are unusable here. They
        # are dropped, not closed: closing means calling into their (other) loop. Garbage
        # collection closes this process's descriptor; a parent's socket is never shut down.
        count = len(self._slots)
        self._slots = [None] * count
        self._opening = [None] * count
        self._spare = []
        self._loop = None
        self._reconnect.probe = None

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                self._forget()
            self._loop = loop
        return loop

    async def _pipeline(self, wait: bool, until: float) -> Pipeline:
        """A shared connection (round robin); with ``wait``, a restarting store is waited for
        until ``until``, the call's deadline."""
        self._own_loop()
        index = self._next
        self._next = (index + 1) % len(self._slots)
        pipeline = self._slots[index]
        if pipeline is not None and pipeline.usable:
            return pipeline
        return await self._until_connected(lambda: self._reopen(index), wait, until)

    async def _reopen(self, index: int) -> Pipeline | None:
        """Slot ``index``'s connection, opened by one attempt that every caller shares."""
        pipeline = self._slots[index]
        if pipeline is not None and pipeline.usable:
            return pipeline
        task = self._opening[index]
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(index))
            # Waiters may all be cancelled; the outcome is then read here, never "unretrieved".
            task.add_done_callback(_consume_outcome)
            self._opening[index] = task
        # Shielded: one caller's cancellation must not abort a connect others wait for.
        return await asyncio.shield(task)

    async def _open(self, index: int) -> Pipeline | None:
        try:
            pipeline = await self._attempt(self._timeout)
            self._slots[index] = pipeline
            return pipeline
        finally:
            self._opening[index] = None

    async def _connect(self, timeout: float | None, wait: bool) -> Pipeline:
        """A new unshared connection whose replies time out after ``timeout``."""
        return await self._until_connected(lambda: self._attempt(timeout), wait)

    async def _until_connected(
        self, attempt: Callable[[], Awaitable[P | None]], wait: bool, until: float | None = None
    ) -> P:
        """Run ``attempt`` until it connects, paced (and bounded: until ``until``, else the
        client timeout from now) by ``_outage.Reconnect``."""
        reconnect = self._reconnect
        if until is None:
            until = _outage.deadline(self._timeout)
        deadline = until if wait else None
        while True:
            if reconnect.unanswered:
                await self._probe()
            delay = reconnect.wait_time(deadline)
            if delay:
                await asyncio.sleep(delay)
            pipeline = await attempt()
            if pipeline is not None:
                return pipeline

    async def _attempt(self, timeout: float | None) -> Pipeline | None:
        """One connect (and AUTH) whose replies time out after ``timeout``; None when nobody
        listens (recorded for pacing)."""
        loop = asyncio.get_running_loop()
        display = self.url.display
        pipeline = await self._dial(lambda: Pipeline(loop, display, timeout, self._max_in_flight))
        if pipeline is None:
            return None
        if self._auth is not None:
            error = _resp.auth_error(display, await pipeline.request(self._auth))
            if error is not None:
                pipeline.close()
                raise error
        self._reconnect.succeeded()
        return pipeline

    async def _probe(self) -> None:
        """Return once a store that left a request unanswered answers again, else raise the
        outage's error at once. The question is a PING on a connection of its own whose
        reply nobody waits for: later calls look whether it came, and send a new probe when
        this one's connection fails."""
        reconnect = self._reconnect
        probe: tuple[Pipeline, asyncio.Future[Any]] | None = reconnect.probe
        if probe is not None:
            pipeline, pong = probe
            if not pong.done():
                raise reconnect.error()
            reconnect.probe = None
            pipeline.close()
            if not pong.cancelled() and pong.exception() is None:
                reconnect.answered()
                return
        if reconnect.probe_due():
            loop = asyncio.get_running_loop()
            display = self.url.display
            fresh = await self._dial(lambda: Pipeline(loop, display, None, self._max_in_flight))
            if fresh is None:
                return  # now it refuses connections: the caller's connect loop decides
            if self._auth is not None:
                fresh.request(self._auth).add_done_callback(_consume_outcome)
            pong = fresh.request(_resp.PING)
            pong.add_done_callback(_consume_outcome)
            reconnect.probing((fresh, pong))
        raise reconnect.error()

    def _unanswered(self, error: CacheTimeoutError) -> None:
        """A request went unanswered for the client timeout: the store is down until it
        answers a probe, and the other connections to it would only wait as long."""
        self._reconnect.timed_out(error)
        for pipeline in self._slots:
            if pipeline is not None:
                pipeline.fail(type(error)(str(error)))
        spare, self._spare = self._spare, []
        for pipeline in spare:
            pipeline.close()

    async def _dial(self, factory: Callable[[], P]) -> P | None:
        """One connect speaking ``factory``'s protocol; None when nobody listens (recorded
        for pacing)."""
        loop = asyncio.get_running_loop()
        url = self.url
        try:
            if url.unix_path is not None:
                connecting = loop.create_unix_connection(factory, url.unix_path)
            else:
                assert url.host is not None and url.port is not None
                connecting = loop.create_connection(factory, url.host, url.port)
            _, protocol = await asyncio.wait_for(connecting, self._connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, OSError):
                exc = TimeoutError()
            self._reconnect.failed(_resp.connect_error(url.display, exc, self._connect_timeout))
            return None
        return protocol

    async def close(self) -> None:
        """Close every connection, the probe's too."""
        for pipeline in self._slots:
            if pipeline is not None:
                pipeline.close()
        self._slots = [None] * len(self._slots)
        spare, self._spare = self._spare, []
        for pipeline in spare:
            pipeline.close()
        probe: tuple[Pipeline, asyncio.Future[Any]] | None = self._reconnect.probe
        if probe is not None:
            self._reconnect.probe = None
            probe[0].close()

    # -- requests --------------------------------------------------------------------------

    async def _request(self, payload: bytes, idempotent: bool = True, wait: bool = True) -> Any:
        """One request's reply; error replies raise :class:`CacheResponseError`."""
        until = _outage.deadline(self._timeout)
        pipeline = await self._pipeline(wait, until)
        if len(pipeline.pending) >= pipeline.limit:
            await pipeline.wait_room()
        try:
            reply = await pipeline.request(payload, until)
        except CacheTimeoutError as exc:
            self._unanswered(exc)
            raise  # not sent again: the store may still be working on it
        except CacheConnectionError:
            reply = (await self._again(pipeline, (payload,), idempotent, wait, until))[0]
        if type(reply) is resp.ErrorReply:
            raise error_reply(reply.message)
        return reply

    async def _request_many(self, payloads: Sequence[bytes]) -> list[Any]:
        until = _outage.deadline(self._timeout)
        pipeline = await self._pipeline(True, until)
        try:
            replies = await self._exchange(pipeline, payloads, until)
        except CacheTimeoutError as exc:
            self._unanswered(exc)
            raise
        except CacheConnectionError:
            replies = await self._again(pipeline, payloads, True, True, until)
        for reply in replies:
            _resp.check(reply)
        return replies

    def _read(self, payload: bytes) -> Awaitable[Any]:
        """A request that only reads: it waits for a restarting store only if reads do.
        (A plain function handing back ``_request``'s coroutine: no extra frame per GET.)"""
        return self._request(payload, wait=self._reads_wait)

    async def _again(
        self,
        broken: Pipeline,
        payloads: Sequence[bytes],
        idempotent: bool,
        wait: bool,
        until: float,
    ) -> list[Any]:
        """Run ``payloads``, whose connection ``broken`` broke under them, again on a new
        connection while ``_resp.may_resend`` allows (at most ``_resp.RESENDS`` times); else
        raise the connection's error."""
        for _ in range(_resp.RESENDS):
            fresh = await self._pipeline(wait, until)
            for _ in range(_resp.DYING_STORE_CHECKS):
                if _resp.may_resend(idempotent, broken.peer, fresh.peer) or fresh.peer is None:
                    break
                # The same store process: alive (it may have run the request), or still dying
                # (a killed process can accept a connection while its sockets are being closed).
                try:
                    await self._exchange(fresh, (_resp.PING,), until)
                except CacheTimeoutError as exc:
                    self._unanswered(exc)
                    raise
                except CacheConnectionError:
                    fresh = await self._pipeline(wait, until)
                else:
                    break
            if not _resp.may_resend(idempotent, broken.peer, fresh.peer):
                break
            try:
                return await self._exchange(fresh, payloads, until)
            except CacheTimeoutError as exc:
                self._unanswered(exc)
                raise  # not sent again: the store may still be working on it
            except CacheConnectionError:
                broken = fresh
        error = broken.error
        assert error is not None
        raise type(error)(str(error))

    @staticmethod
    async def _exchange(pipeline: Pipeline, payloads: Sequence[bytes], until: float) -> list[Any]:
        if len(pipeline.pending) >= pipeline.limit:
            await pipeline.wait_room()
        futures = [pipeline.request(payload, until) for payload in payloads]
        return [await future for future in futures]

    # -- operations ------------------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        """GET."""
        reply: bytes | None = await self._read(_resp.cmd_get(key))
        return reply

    async def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """MGET."""
        return _resp.as_values(await self._read(resp.encode_command("MGET", *keys)))

    async def set(self, key: bytes, value: bytes, px: int | None, nx: bool, xx: bool) -> bool:
        """SET [PX] [NX|XX]."""
        return bool(await self._request(_resp.cmd_set(key, value, px, nx, xx)) == "OK")

    async def mset(self, items: Sequence[tuple[bytes, bytes]], px: int | None) -> None:
        """Pipelined SETs."""
        await self._request_many(_resp.cmd_mset(items, px))

    async def delete(self, keys: Sequence[bytes]) -> int:
        """DEL."""
        return _resp.as_int(await self._request(resp.encode_command("DEL", *keys)))

    async def exists(self, key: bytes) -> bool:
        """EXISTS."""
        return _resp.as_int(await self._read(resp.encode_command("EXISTS", key))) > 0

    async def incrby(self, key: bytes, delta: int) -> int:
        """INCRBY (sent twice only to a new store process, see ``_resp.may_resend``)."""
        payload = resp.encode_command("INCRBY", key, delta)
        return _resp.as_int(await self._request(payload, idempotent=False))

    async def pexpire(self, key: bytes, px: int | None) -> bool:
        """PEXPIRE, or PERSIST + EXISTS."""
        if px is None:
            replies = await self._request_many(_resp.cmd_persist(key))
            return _resp.as_int(replies[1]) > 0
        return _resp.as_int(await self._request(resp.encode_command("PEXPIRE", key, px))) > 0

    async def pttl(self, key: bytes) -> int:
        """PTTL."""
        return _resp.as_int(await self._read(resp.encode_command("PTTL", key)))

    async def scan_iter(self, match: bytes, count: int) -> AsyncIterator[bytes]:
        """SCAN until the cursor comes back 0."""
        cursor = 0
        while True:
            reply = await self._read(_resp.cmd_scan(cursor, match, count))
            cursor, keys = _resp.scan_reply(reply)
            for key in keys:
                yield key
            if cursor == 0:
                return

    async def flushdb(self) -> None:
        """FLUSHDB."""
        await self._request(_resp.FLUSHDB)

    async def ping(self) -> None:
        """PING."""
        await self._read(_resp.PING)

    async def info(self) -> dict[str, Any]:
        """INFO, parsed."""
        return _resp.parse_info(await self._read(_resp.INFO))

    # -- single-flight leases (BS.* commands, see docs/stampede.md) -----------------------

    async def _alone(
        self, payload: bytes, timeout: float | None, wait: bool, parked: bool = False
    ) -> tuple[Any, Pipeline]:
        """Send ``payload`` on an unshared connection; the caller owns it afterwards. With
        ``parked`` (a request the store may park, see ``_resp.parked``) a PING goes first and
        must come back within the client timeout; the reply then within ``timeout``. Any
        failure or cancellation closes it, which also ends a lease or wait it had."""
        self._own_loop()
        spare = self._spare
        while spare:
            pipeline = spare.pop()
            if pipeline.usable:
                break
        else:
            pipeline = await self._connect(None, wait)
        try:
            if parked:
                pong = pipeline.request(_resp.PING)
                reply = pipeline.request(payload)
                await self._within(pong, self._timeout)
            else:
                reply = pipeline.request(payload)
            reply = await self._within(reply, timeout)
        except BaseException:
            pipeline.close()
            raise
        return reply, pipeline

    async def _within(self, reply: asyncio.Future[Any], timeout: float | None) -> Any:
        """``reply``'s outcome, or :class:`CacheTimeoutError` (the store counts as down)
        when it takes longer than ``timeout``."""
        try:
            return await asyncio.wait_for(reply, timeout)
        except asyncio.TimeoutError:
            error = _resp.no_reply(self.url.display, timeout)
            self._unanswered(error)
            raise error from None

    def _give_back(self, pipeline: Pipeline) -> None:
        if pipeline.usable and len(self._spare) < SPARE_CONNECTIONS:
            self._spare.append(pipeline)
        else:
            pipeline.close()

    async def fetch(self, key: bytes, lease_ms: int, wait_ms: int) -> Fetched:
        """BS.FETCH: the value, else the lease, else park in the store up to ``wait_ms``."""
        if self._lock_keys is not None:
            return await self._lock_keys.fetch(key, lease_ms, wait_ms)
        payload = _resp.cmd_fetch(key, lease_ms, wait_ms)
        timeout = None if self._timeout is None else self._timeout + wait_ms / 1000
        reply, pipeline = await self._alone(payload, timeout, self._reads_wait, parked=True)
        if not _resp.grants_lease(reply):
            self._give_back(pipeline)
        if _resp.is_unknown_command(reply):
            return await self._without_native_leases().fetch(key, lease_ms, wait_ms)
        outcome = _resp.fetched(reply)
        if outcome.kind != "lease":
            return outcome
        return Fetched("lease", lease=_AsyncStoreLease(self, pipeline, key, outcome.lease))

    async def try_lease(self, key: bytes, lease_ms: int) -> AsyncLease | None:
        """BS.LEASE: the lease if nobody holds it, without waiting."""
        if self._lock_keys is not None:
            return await self._lock_keys.try_lease(key, lease_ms)
        reply, pipeline = await self._alone(_resp.cmd_lease(key, lease_ms), self._timeout, False)
        if not _resp.grants_lease(reply):
            self._give_back(pipeline)
        if _resp.is_unknown_command(reply):
            return await self._without_native_leases().try_lease(key, lease_ms)
        token = _resp.lease_token(reply)
        return None if token is None else _AsyncStoreLease(self, pipeline, key, token)

    def _without_native_leases(self) -> AsyncLockKeyLeases:
        # A Redis/Valkey server behind a unix:// or tcp:// URL has no BS.* commands.
        self._lock_keys = AsyncLockKeyLeases(self)
        return self._lock_keys

    async def delete_if_equal(self, key: bytes, expected: bytes) -> bool:
        """Compare-and-delete by script (only used against Redis/Valkey servers)."""
        reply = await self._request(_resp.cmd_delete_if_equal(key, expected), idempotent=False)
        return _resp.as_int(reply) > 0

    # -- locks (BLINK.LOCK* commands, see store_async_locks.py) ----------------------------

    @functools.cached_property
    def _locks(self) -> AsyncStoreLocks:
        return AsyncStoreLocks(self)

    async def lock(self, name: bytes, px: int | None, wait_ms: int | None) -> AsyncLockHold | None:
        """BLINK.LOCK: the lock, or None when it stays taken for ``wait_ms``."""
        return await self._locks.lock(name, px, wait_ms)

    async def lock_token(self, name: bytes) -> bytes | None:
        """BLINK.LOCKTOKEN: the holder's token, or None when the lock is free."""
        return await self._locks.lock_token(name)

    async def extend_if_equal(self, key: bytes, expected: bytes, ms: int, replace: bool) -> bool:
        """Compare-and-pexpire by script (only used against Redis/Valkey servers)."""
        payload = _resp.cmd_extend_if_equal(key, expected, ms, replace)
        return _resp.as_int(await self._request(payload, idempotent=False)) > 0

    # -- pub/sub --

    async def publish(self, channel: bytes, message: bytes) -> int:
        """PUBLISH (never sent twice: a lost connection may have delivered it)."""
        reply = await self._request(_resp.cmd_publish(channel, message), idempotent=False)
        return _resp.as_int(reply)

    async def subscribe(
        self, channels: Sequence[bytes], patterns: Sequence[bytes]
    ) -> AsyncStoreFeed:
        """SUBSCRIBE / PSUBSCRIBE on a connection of its own; returns once confirmed."""
        payload, confirmations = _resp.cmd_subscribe(channels, patterns)
        loop = asyncio.get_running_loop()
        display = self.url.display
        feed = await self._until_connected(
            lambda: self._dial(lambda: AsyncStoreFeed(loop, display, confirmations)), True
        )
        self._reconnect.succeeded()
        await feed.start(self._auth, payload, self._timeout)
        return feed


class _AsyncStoreLease:
    """A lease granted on ``pipeline``, kept unshared until the lease ends, so the store
    ends the lease by itself if this process dies."""

    __slots__ = ("_backend", "_key", "_pipeline", "_token")

    def __init__(
        self, backend: AsyncStoreBackend, pipeline: Pipeline, key: bytes, token: int
    ) -> None:
        self._backend, self._pipeline, self._key, self._token = backend, pipeline, key, token

    async def _finish(self, payload: bytes) -> None:
        pipeline = self._pipeline
        backend = self._backend
        try:
            reply = await backend._within(pipeline.request(payload), backend._timeout)
        except BaseException:
            pipeline.close()
            raise
        self._backend._give_back(pipeline)
        _resp.check(reply)

    async def fill(self, value: bytes, px: int | None) -> None:
        """BS.FILL: store the value, wake the waiters, end the lease."""
        await self._finish(_resp.cmd_fill(self._key, self._token, value, px))

    async def release(self) -> None:
        """BS.RELEASE: end the lease without a value; the first waiter takes over."""
        await self._finish(_resp.cmd_release(self._key, self._token))


#: ``AsyncStoreBackend`` objects whose connections a forked child must drop, not share.
_track_for_fork = _resp.forget_in_forked_children(AsyncStoreBackend._forget)
