"""The programs the compatibility tests run in processes of their own (``python -m
tests.compat.compat_apps NAME URL ...``), and the job functions their workers import.

Each program prints ``ready`` once it is set up, so a test waits on that line rather than
on time, and ends by itself within its own deadline.
"""

from __future__ import annotations

import asyncio
import json
import sys

from channels_redis.core import RedisChannelLayer

DEADLINE = 60.0


def add(a: int, b: int) -> int:
    """The job every queue runs: its result proves the worker ran it."""
    return a + b


async def channels_receive(url: str, group: str) -> None:
    """Join ``group`` on a new channel, say ``ready``, print the first message received."""
    layer = RedisChannelLayer(hosts=[url])
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    print("ready", flush=True)
    message = await asyncio.wait_for(layer.receive(channel), DEADLINE)
    print(json.dumps(message), flush=True)
    await layer.group_discard(group, channel)
    await layer.close_pools()


def main(argv: list[str]) -> None:
    """Run the program ``argv[0]`` with the rest as its arguments."""
    name, *args = argv
    if name == "channels-receive":
        asyncio.run(channels_receive(*args))
    else:
        raise SystemExit(f"unknown program {name!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
