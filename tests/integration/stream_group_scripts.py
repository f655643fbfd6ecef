"""The consumer-group command scripts ``test_store_stream_groups.py`` runs on redis-server and
``blinkstore serve`` (one command a line, split like a shell line), replies compared byte for
byte but for the times in them (idle times, delivery and seen times), which it masks."""

from __future__ import annotations

import random

from tests.integration.redis_command_scripts import script

__all__ = ["GROUP_ERRORS", "GROUP_LIFE", "LAG_AND_INFO", "NODE_SPLITS", "RADIX_TREE"]

#: Every command's argument checks, in Redis's order, and the wrong type.
GROUP_ERRORS = script(
    """
    XGROUP
    XGROUP HELP
    XGROUP HELP x
    XGROUP FOO
    XGROUP CREATE k
    XGROUP CREATE k g $
    XGROUP CREATE k g $ MKSTREAM ENTRIESREAD
    XGROUP CREATE k g $ MKSTREAM ENTRIESREAD x
    XGROUP CREATE k g $ MKSTREAM ENTRIESREAD -2
    XGROUP CREATE k g $ MKSTREAM a b c d
    XGROUP CREATE k g bad MKSTREAM
    XGROUP CREATE k g $ MKSTREAM
    XGROUP CREATE k g $ MKSTREAM
    XGROUP CREATE k g $
    XGROUP CREATE k g3 -
    XGROUP SETID k nog 0
    XGROUP SETID k g 0 x
    XGROUP SETID k g 0 ENTRIESREAD 2 x y
    XGROUP SETID k g bad
    XGROUP CREATECONSUMER k nog c
    XGROUP DELCONSUMER k nog c
    XGROUP DESTROY nokey g
    XGROUP CREATECONSUMER nokey g c
    XREADGROUP GROUP g c1 STREAMS k $
    XREADGROUP GROUP nog c1 STREAMS k >
    XREADGROUP GROUP g c1 STREAMS nokey >
    XREADGROUP GROUP g c1 STREAMS k bad
    XREADGROUP GROUP g c1 STREAMS k
    XREADGROUP GROUP g c1 STREAMS k > k2
    XREADGROUP STREAMS k >
    XREADGROUP GROUP g STREAMS k >
    XREADGROUP GROUP g c1 NOACK COUNT x STREAMS k >
    XREADGROUP GROUP g c1 BLOCK x STREAMS k >
    XREADGROUP GROUP g c1 BLOCK -1 STREAMS k >
    XREADGROUP GROUP g c1 FOO STREAMS k >
    XREAD GROUP g c STREAMS k 0
    XREAD NOACK STREAMS k 0
    XREAD STREAMS k >
    XACK k g bad
    XACK k nog bad
    XACK nokey g bad
    XPENDING k g -
    XPENDING k g IDLE 0 - +
    XPENDING k g IDLE x - + 10
    XPENDING k g - + x
    XPENDING k g x + 1
    XPENDING k g - x 1
    XPENDING k g (+ + 1
    XPENDING k g - (- 1
    XPENDING k nog
    XPENDING nokey g
    XCLAIM k g c x 1-1
    XCLAIM k g c 0 1-1 IDLE x
    XCLAIM k g c 0 1-1 TIME x
    XCLAIM k g c 0 1-1 RETRYCOUNT x
    XCLAIM k g c 0 1-1 LASTID x
    XCLAIM k g c 0 1-1 BOGUS
    XCLAIM k g c 0 1-1 IDLE
    XCLAIM k nog c 0 1-1
    XAUTOCLAIM k g c 0 0 COUNT 0
    XAUTOCLAIM k g c 0 0 COUNT x
    XAUTOCLAIM k g c 0 0 BAD
    XAUTOCLAIM k g c x 0
    XAUTOCLAIM k g c 0 x
    XAUTOCLAIM k g c 0 (+
    XAUTOCLAIM k nog c 0 0
    XINFO
    XINFO HELP
    XINFO FOO k
    XINFO CONSUMERS k nog
    XINFO CONSUMERS nokey g
    XINFO GROUPS nokey
    XINFO STREAM nokey
    XINFO STREAM k x
    XINFO STREAM k FULL COUNT
    XINFO STREAM k FULL COUNT x
    XSETID nokey 9-9
    XSETID k bad
    XSETID k 10-0 ENTRIESADDED -1
    XSETID k 10-0 MAXDELETEDID 11-0
    XSETID k 10-0 BAD 1
    SET str v
    XGROUP CREATE str g $
    XREADGROUP GROUP g c STREAMS str >
    XACK str g 1-1
    XPENDING str g
    XCLAIM str g c 0 1-1
    XAUTOCLAIM str g c 0 0
    XINFO STREAM str
    XSETID str 1-1
    """
)

#: Delivering, acknowledging, claiming; pending lists and groups moving with their key.
GROUP_LIFE = script(
    """
    XGROUP CREATE k g $ MKSTREAM
    TYPE k
    XADD k 1-1 a 1
    XADD k 1-2 a 2 b 3
    XADD k 2-0 c 4
    XREADGROUP GROUP g c1 COUNT 1 STREAMS k >
    XREADGROUP GROUP g c2 STREAMS k >
    XREADGROUP GROUP g c2 STREAMS k >
    XPENDING k g
    XPENDING k g - + 10
    XPENDING k g - + 10 c1
    XPENDING k g - + 10 nobody
    XPENDING k g IDLE 0 - + 10
    XPENDING k g IDLE 3600000 - + 10
    XPENDING k g (1-1 + 10
    XPENDING k g - (2-0 1
    XREADGROUP GROUP g c1 STREAMS k 0
    XREADGROUP GROUP g c1 COUNT 1 STREAMS k 0
    XREADGROUP GROUP g c2 STREAMS k 1-1
    XREADGROUP GROUP g c3 STREAMS k 0
    XDEL k 1-2
    XREADGROUP GROUP g c2 STREAMS k 0
    XACK k g 1-1 1-1 9-9
    XPENDING k g
    XCLAIM k g c9 3600000 2-0 JUSTID
    XCLAIM k g c9 0 1-2 2-0 JUSTID
    XPENDING k g - + 10
    XCLAIM k g c9 0 2-0
    XCLAIM k g c9 0 1-1 FORCE
    XCLAIM k g c9 0 2-0 FORCE RETRYCOUNT 7 JUSTID
    XCLAIM k g c8 0 2-0 IDLE 7200000 JUSTID
    XPENDING k g IDLE 3600000 - + 10
    XPENDING k g - + 10
    XCLAIM k g c9 0 2-0 LASTID 5-0 JUSTID
    XINFO GROUPS k
    XAUTOCLAIM k g c1 3600000 0 JUSTID
    XAUTOCLAIM k g c1 0 0 COUNT 1
    XAUTOCLAIM k g c1 0 0
    XAUTOCLAIM k g c1 0 0 JUSTID
    XADD k 3-0 d 5
    XADD k 4-0 e 6
    XREADGROUP GROUP g c2 STREAMS k >
    XREADGROUP GROUP g c2 STREAMS k >
    XPENDING k g - + 10
    XDEL k 3-0
    XAUTOCLAIM k g c3 0 0
    XPENDING k g
    XGROUP CREATECONSUMER k g c1
    XGROUP CREATECONSUMER k g newc
    XGROUP DELCONSUMER k g c1
    XGROUP DELCONSUMER k g c1
    XPENDING k g
    XGROUP CREATE k g2 0
    XGROUP CREATE k g3 0
    XREADGROUP GROUP g2 x NOACK STREAMS k >
    XREADGROUP GROUP g3 y STREAMS k >
    XGROUP DESTROY k g2
    XGROUP DESTROY k g2
    XINFO GROUPS k
    COPY k k2
    XINFO GROUPS k2
    XPENDING k2 g3
    XACK k2 g3 4-0
    XPENDING k2 g3
    XPENDING k g3
    RENAME k2 k3
    XINFO GROUPS k3
    EXISTS k2
    DEL k
    XINFO GROUPS k
    XADD k 1-1 f v
    XINFO GROUPS k
    FLUSHALL
    XINFO GROUPS k3
    XGROUP CREATE k g 0 MKSTREAM
    XADD k 1-1 f v
    XADD k 1-2 f v
    XADD k 1-3 f v
    XREADGROUP GROUP g a NOACK STREAMS k >
    XPENDING k g
    XGROUP SETID k g 0
    XREADGROUP GROUP g a COUNT 2 STREAMS k >
    XGROUP SETID k g -
    XREADGROUP GROUP g b COUNT 1 STREAMS k >
    XPENDING k g - + 10
    XINFO CONSUMERS k g
    XREADGROUP GROUP g b STREAMS k >
    XREADGROUP GROUP g b BLOCK 10 STREAMS k >
    MULTI
    XREADGROUP GROUP g b BLOCK 0 STREAMS k >
    EXEC
    XADD other 1-1 f v
    XGROUP CREATE other g 0
    XREADGROUP GROUP g b STREAMS k 0 other >
    XREADGROUP GROUP g b STREAMS k > other >
    XREADGROUP GROUP g b STREAMS k 18446744073709551615-18446744073709551615
    XREADGROUP GROUP g c STREAMS k k > 0
    XREADGROUP GROUP g c2 STREAMS k k 0 0
    XGROUP CREATE k g9 $
    XREADGROUP GROUP g9 fresh STREAMS k >
    XINFO GROUPS k
    XREADGROUP GROUP g9 fresh STREAMS k 0
    XCLAIM k g d 0 1-1 TIME 99999999999999 JUSTID
    XCLAIM k g d 0 1-1 TIME -5 JUSTID
    XCLAIM k g d 0 1-1 IDLE -5 JUSTID
    XCLAIM k g d -5 1-1 JUSTID
    XCLAIM k g d 0 1-1 RETRYCOUNT -3 JUSTID
    XAUTOCLAIM k g e -5 0 JUSTID
    XAUTOCLAIM k g e 0 (1-1 COUNT 1 JUSTID
    XAUTOCLAIM k g e 0 + JUSTID
    XADD k MAXLEN 1 4-1 d 4
    XPENDING k g
    XREADGROUP GROUP g e STREAMS k 0
    XAUTOCLAIM k g f 0 0
    XCLAIM k g e 0 1-1 2-1 3-1 4-1 FORCE
    XCLAIM k g c 0 LASTID 9-0
    XINFO GROUPS k
    """
)

#: The read counters and lag Redis 7.0 computes, with deletions, trims and XSETID between.
LAG_AND_INFO = script(
    """
    XADD s 1-1 a 1
    XADD s 1-2 a 2
    XDEL s 1-2
    XSETID s 1-1
    XINFO STREAM s
    XSETID s 1-5 MAXDELETEDID 1-3
    XINFO STREAM s
    XSETID s 1-2
    XSETID s 1-5 ENTRIESADDED 0
    XSETID s 1-6 ENTRIESADDED 9
    XINFO STREAM s
    XTRIM s MAXLEN 0
    XINFO STREAM s
    XINFO STREAM s FULL
    XGROUP CREATE e g $ MKSTREAM
    XINFO STREAM e
    XINFO STREAM e FULL
    XINFO GROUPS e
    XADD x 1-1 a 1
    XADD x 2-1 a 1 b 2
    XADD x 3-1 a 1
    XADD x 4-1 z 1
    XADD x 5-1 a 1
    XINFO STREAM x
    XGROUP CREATE x g1 0
    XGROUP CREATE x g2 2-1
    XGROUP CREATE x g3 $
    XGROUP CREATE x g4 9-9
    XGROUP CREATE x g5 0 ENTRIESREAD 3
    XGROUP CREATE x g6 3-1 ENTRIESREAD 3
    XINFO GROUPS x
    XDEL x 4-1
    XINFO GROUPS x
    XREADGROUP GROUP g1 a COUNT 2 STREAMS x >
    XREADGROUP GROUP g2 a COUNT 2 STREAMS x >
    XREADGROUP GROUP g6 a COUNT 1 STREAMS x >
    XINFO GROUPS x
    XDEL x 1-1
    XINFO GROUPS x
    XREADGROUP GROUP g1 a STREAMS x >
    XREADGROUP GROUP g1 a COUNT 0 STREAMS x 0
    XREADGROUP GROUP g1 a COUNT -1 STREAMS x 0
    XINFO GROUPS x
    XINFO STREAM x
    XINFO STREAM x FULL COUNT 0
    XINFO STREAM x FULL COUNT 1
    XINFO STREAM x FULL COUNT -5
    XGROUP SETID x g2 $ ENTRIESREAD 100
    XINFO GROUPS x
    XGROUP SETID x g2 1
    XINFO GROUPS x
    XREADGROUP GROUP g2 zz STREAMS x >
    XINFO GROUPS x
    XINFO CONSUMERS x g2
    XADD x 6-0 a 1
    XINFO GROUPS x
    XTRIM x MINID 5-1
    XINFO GROUPS x
    OBJECT ENCODING x
    """
)

#: XINFO STREAM's radix tree figures for streams of many nodes (100 small entries each, as
#: Redis splits them), IDs spread so that the tree branches at several depths.
RADIX_TREE = [
    *(
        ["XADD", f"r{spread}", f"{1_700_000_000_000 + i * spread}-{i % 7}", "f", "1"]
        for spread in (1, 251, 70_001)
        for i in range(1200)
    ),
    *(["XINFO", "STREAM", f"r{spread}"] for spread in (1, 251, 70_001)),
    ["XTRIM", "r251", "MAXLEN", "~", "650"],
    ["XDEL", "r1", *(f"{1_700_000_000_100 + i}-{(100 + i) % 7}" for i in range(100))],
    *(["XINFO", "STREAM", f"r{spread}"] for spread in (1, 251)),
]


def _node_splits() -> list[list[str]]:
    """Streams whose nodes Redis closes by size (4 KiB of listpack) as well as by count:
    values of several lengths, numbers a listpack keeps as integers, fields that change
    (no SAMEFIELDS), IDs whose deltas need wider integers; then approximate trims, whose
    counts follow the nodes, and XINFO STREAM's node figures."""
    rng = random.Random(20)
    commands = []
    for key in ("a", "b", "c"):
        ms = 1_700_000_000_000
        for i in range(700):
            ms += rng.choice([0, 1, 3, 250, 70_000, 40_000_000])
            value = rng.choice(
                [
                    "x" * rng.choice([1, 10, 60, 70, 300]),
                    str(rng.randrange(-9_000_000_000, 9_000_000_000)),
                ]
            )
            field = rng.choice(["f", "f", "f", "other", "n" * 70])
            commands.append(["XADD", key, f"{ms}-{i}", field, value, "g", str(i)])
        commands.append(["XINFO", "STREAM", key])
    commands += [
        ["XTRIM", "a", "MAXLEN", "~", "350"],
        ["XTRIM", "b", "MINID", "~", commands[900][2]],
        ["XADD", "c", "MAXLEN", "~", "100", "9999999999999-0", "f", "v"],
        *(["XINFO", "STREAM", key] for key in ("a", "b")),
        ["XLEN", "c"],
    ]
    return commands


NODE_SPLITS = _node_splits()
