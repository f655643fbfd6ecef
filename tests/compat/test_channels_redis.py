"""channels_redis's ``RedisChannelLayer``: ``group_add`` in one process, ``group_send`` in
another, ``receive`` getting it; and send/receive on a single channel, on both servers."""

from __future__ import annotations

import asyncio
import json

from channels_redis.core import RedisChannelLayer

from tests.compat.compat_support import Server, wait_output
from tests.integration.integration_support import process_output, running_process


def test_group_send_reaches_another_process(fresh: Server) -> None:
    program = ["-m", "tests.compat.compat_apps", "channels-receive", fresh.url, "room"]
    with running_process(program) as receiver:
        wait_output(receiver, "ready")

        async def send() -> None:
            layer = RedisChannelLayer(hosts=[fresh.url])
            await layer.group_send("room", {"type": "chat.message", "text": "hello"})
            await layer.close_pools()

        asyncio.run(send())
        assert receiver.wait(60) == 0, process_output(receiver)
        received = json.loads(process_output(receiver).splitlines()[-1])
    assert received == {"type": "chat.message", "text": "hello"}


def test_send_receive_and_group_discard(fresh: Server) -> None:
    async def scenario() -> None:
        layer = RedisChannelLayer(hosts=[fresh.url], expiry=30)
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "one"})
        await layer.send(channel, {"type": "two"})
        assert await asyncio.wait_for(layer.receive(channel), 30) == {"type": "one"}
        assert await asyncio.wait_for(layer.receive(channel), 30) == {"type": "two"}
        await layer.group_add("lobby", channel)
        await layer.group_discard("lobby", channel)
        await layer.group_send("lobby", {"type": "nobody"})
        await layer.send(channel, {"type": "direct"})
        # The discarded group's message never arrives: the direct one comes first.
        assert await asyncio.wait_for(layer.receive(channel), 30) == {"type": "direct"}
        await layer.flush()
        await layer.close_pools()

    asyncio.run(scenario())
