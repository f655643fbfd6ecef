"""The RESP commands, one module per family, the way Redis splits its sources.

=================  ===============================================================
``strings``        GET, SET and its variants, MGET/MSET, INCR/DECR, APPEND... (t_string.c)
``lcs``            LCS (t_string.c)
``bitmaps``        SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP (bitops.c)
``expire``         EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST, TTL, PTTL... (expire.c)
``keyspace``       DEL, UNLINK, EXISTS, TYPE, RENAME, SCAN, KEYS, RANDOMKEY... (db.c)
``sort``           SORT, SORT_RO (sort.c)
``objects``        OBJECT, MEMORY USAGE, WAIT (object.c, replication.c)
``hashes``         HSET, HGET, HGETALL, HDEL, HINCRBY, HSCAN... (t_hash.c)
``lists``          LPUSH, RPUSH, LPOP, RPOP, LRANGE, LREM, LTRIM, LPOS, LMOVE... (t_list.c)
``sets``           SADD, SREM, SMEMBERS, SPOP, SINTER, SUNION, SDIFF, SSCAN... (t_set.c)
``hyperloglog``    PFADD, PFCOUNT, PFMERGE (hyperloglog.c; the layout is ``engine/hyperloglog.py``)
``introspection``  INFO, CONFIG GET, COMMAND (server.c, config.c)
``persistence``    SAVE, BGSAVE, LASTSAVE (rdb.c; the file is ``storage/``)
``dump``           DUMP, RESTORE (cluster.c; the payload is ``storage/dump.py``)
``session``        PING, ECHO, QUIT, AUTH, HELLO (Redis's "connection" group)
``clients``        CLIENT ID, INFO, LIST, GETNAME, SETNAME, SETINFO, KILL (networking.c)
``stampede``       BS.FETCH, BS.LEASE, BS.FILL, BS.RELEASE (ours: single-flight leases)
``locks``          BLINK.LOCK, BLINK.UNLOCK, BLINK.LOCKEXTEND, BLINK.LOCKTOKEN (ours)
``pubsub``         SUBSCRIBE, PSUBSCRIBE, (P)UNSUBSCRIBE, PUBLISH, PUBSUB (pubsub.c)
``ratelimit``      BLINK.RATELIMIT, BLINK.WINDOW (ours: rate limits)
``zsets``          ZADD, ZRANGE, ZRANGEBYSCORE, ZSCORE, ZPOPMIN, ZREMRANGEBYSCORE... (t_zset.c)
``zsetops``        ZUNION, ZINTER, ZDIFF (and STORE), ZINTERCARD, ZRANDMEMBER (t_zset.c)
``geo``            GEOADD, GEOPOS, GEODIST, GEOHASH, GEOSEARCH, GEORADIUS... (geo.c)
``mpop``           LMPOP, BLMPOP, ZMPOP, BZMPOP (t_list.c, t_zset.c)
``streams``        XADD, XRANGE, XREVRANGE, XLEN, XDEL, XTRIM, XREAD (t_stream.c)
``streamgroups``   XGROUP, XREADGROUP, XACK, XSETID (t_stream.c)
``streaminfo``     XPENDING, XCLAIM, XAUTOCLAIM, XINFO (t_stream.c)
``transaction``    MULTI, EXEC, DISCARD (multi.c)
``scripting``      EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT, TIME (eval.c; ``server/scripting/``)
``functions``      FUNCTION, FCALL, FCALL_RO (functions.c); ``scriptlayer`` is what the two share
``shm``            BS.SHM (ours: hands the shared-memory region to a client)
=================  ===============================================================

Each family registers its handlers in :data:`~.registry.COMMANDS` when imported; this package
imports them all, so the table is complete as soon as anything here (the registry included) is
imported. ``registry``, ``replies``, ``zreply`` (what the sorted-set families share),
``xreply`` (what the stream families share) and ``scriptlayer`` import no family, and no
family imports another.
"""

from blinkstore_gunicorn.server.commands import (  # noqa: F401 (imported to register)
    bitmaps,
    clients,
    dump,
    expire,
    functions,
    geo,
    hashes,
    hyperloglog,
    introspection,
    keyspace,
    lcs,
    lists,
    locks,
    mpop,
    objects,
    persistence,
    pubsub,
    ratelimit,
    scripting,
    session,
    sets,
    shm,
    sort,
    stampede,
    streamgroups,
    streaminfo,
    streams,
    strings,
    transaction,
    zsetops,
    zsets,
)
from blinkstore_gunicorn.server.commands.registry import COMMANDS

__all__ = ["COMMANDS"]
