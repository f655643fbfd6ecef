/* The plain reads and writes of a RESP connection, answered in C (optional; see
 * server/fastpath.py): GET, MGET, SET key value, INCR, DECR, INCRBY, DECRBY, MSET, and EXPIRE
 * and PEXPIRE without options.
 *
 * A Runner stands in for Dispatcher.execute (same arguments, same result). It answers a request
 * only in the plain case: a list of bytes naming, in the client's table, the very handler of one
 * of those commands (so an upstream's routing, MULTI's queueing table, subscribed mode, a
 * spelling the table lacks all differ), the full table, no busy script, no region being
 * adopted. Anything else goes to the Python path, unchanged and before any side effect here, so
 * the Python path stays the reference for every other case.
 *
 * Reads: every key either absent or a string (bytes, or a block of the shared region) whose
 * deadline has not come and whose value is below LARGE_BULK. What they do is what cmd_get /
 * cmd_mget -> MemoryEngine.get do, with the same side effects in the same state: client.cmd and
 * client.seen (Dispatcher.execute), the key's SIEVE visited mark (engine._visited), the
 * engine's _hits/_misses, and the reply bytes (resp.bulk, the client's nil, resp.array).
 *
 * Writes: every key absent or a string without a deadline, not watched, without a lease, the
 * key and value within the engine's limits and the value within the region's max_value, and
 * the write needing no eviction (so no EntryTooLarge either). What they do is what
 * Dispatcher.write -> MemoryEngine.set(key, value) do then, in the same order: the region's
 * publish (its own method, called as the engine calls it), watched.changes, the dict entry (an
 * existing key keeps its place in the SIEVE queue and gets its visited mark, a new one joins
 * _ahead's end and counts in _inserts) and _used, the region's block cost or the heap's when
 * the region did not take the value; the three counts are kept in C integers and written back
 * once, when the request ends (nothing reads them in between). INCR and its kin read the
 * value as _incr does (peek) and parse it as replies.parse_int; an error or an overflow goes
 * to Python. They keep a TTL not due (keep_ttl: the rate-limit scripts' counters), published
 * with the value. MSET checks every pair before its first write, then writes them between
 * the region's begin_batch and end_batch (seen_at_once).
 *
 * EXPIRE/PEXPIRE key n: what _expire then MemoryEngine.set_expire_at do, for a key that is
 * not watched nor leased, holds a string, and keeps living: the deadline (n from the
 * engine's clock, which must be the dispatcher's), watched.changes, the visited mark, the
 * deadline dict, its heap (a push; a push that would rebuild it is Python's), the region's
 * set_expire, TTL_OVERHEAD in _used (a first TTL that would make the engine evict is
 * Python's) or _heap_stale_bytes. A deadline not in the future (a delete) goes to Python.
 *
 * It reads the engine's private attributes, so engine/memory.py and this file change together;
 * tests/unit/test_fastcmd.py runs both paths on the same random commands and compares replies
 * and state. Attributes are read and written at their __slots__ offsets, found once from the
 * classes' member descriptors (a generic getattr per attribute cost as much as the Python
 * path's whole miss); a class without such a slot makes the Runner refuse to be built, and
 * fastpath.py then keeps the Python path.
 *
 * The data-type commands (LPUSH, SADD, HSET, LRANGE...) are _fasttypes.c's, reached from
 * answer() through _fastcmd.h, on the same terms.
 */
#include "_fastcmd.h"

#include <limits.h>
#include <string.h>
#ifndef Py_T_OBJECT_EX /* before 3.12 */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

enum { MISS = 0, FOUND = 1, HAND_OVER = 2 };

/* The commands answered here, in the order of Runner's handlers. */
enum { GET, MGET, SET, INCR, DECR, INCRBY, DECRBY, MSET, EXPIRE, PEXPIRE, N_HANDLERS };

static PyObject *s_table, *s_busy, *s_now, *s_cmd, *s_seen, *s_nil, *s_inherited, *s_ahead,
    *s_behind, *s_deadlines, *s_visited, *s_hits, *s_misses, *s_region, *s_read, *s_clock_ms,
    *s_max_reply_size, *s_one, *s_zero, *s_ok, *s_leases, *s_leases_dict, *s_max_key_size,
    *s_max_value_size, *s_engine_max_key, *s_engine_max_value, *s_used, *s_inserts,
    *s_memory_limit, *s_watched, *s_changes, *s_max_value, *s_publish, *s_block_bytes,
    *s_begin_batch, *s_end_batch, *s_mm, *s_heap, *s_heap_stale, *s_set_expire, *s_d_clock;
static PyObject *s_int_one, *s_int_zero, *heappush; /* ":1", ":0" replies; heapq.heappush */

Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name) {
    PyObject *descr = PyObject_GetAttr((PyObject *)type, name);
    Py_ssize_t offset = -1;
    if (descr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear();
    } else if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == Py_T_OBJECT_EX && !(member->flags & Py_READONLY))
            offset = member->offset;
    }
    Py_XDECREF(descr);
    if (offset < 0) PyErr_Format(PyExc_TypeError, "%R is not a __slots__ attribute", name);
    return offset;
}

static void slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value) {
    Py_INCREF(value);
    Py_XSETREF(SLOT(obj, offset), value);
}

int slot_size(PyObject *obj, Py_ssize_t offset, Py_ssize_t *out) {
    PyObject *value = SLOT(obj, offset);
    if (value == NULL || !PyLong_CheckExact(value)) return -1;
    *out = PyLong_AsSsize_t(value);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* An exception set aside while a clean-up runs that must run after a failure too. */
typedef struct {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc;
#else
    PyObject *type, *exc, *tb;
#endif
} Pending;

static void pending_take(Pending *p) {
#if PY_VERSION_HEX >= 0x030C0000
    p->exc = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&p->type, &p->exc, &p->tb);
#endif
}

/* Raise the exception set aside again, if there was one, instead of any the clean-up raised:
 * the first failure is the one to report. */
static void pending_restore(Pending *p) {
#if PY_VERSION_HEX >= 0x030C0000
    if (p->exc != NULL) {
        PyErr_Clear();
        PyErr_SetRaisedException(p->exc);
    }
#else
    if (p->type != NULL) {
        PyErr_Clear();
        PyErr_Restore(p->type, p->exc, p->tb);
    }
#endif
}

typedef struct {
    PyObject_HEAD
    PyObject *dispatcher;
    PyObject *engine;
    PyObject *table; /* the dispatcher's full table: upstream routing edits it in place */
    PyObject *handlers[N_HANDLERS];
    PyObject *fallback; /* Dispatcher.execute, called as fallback(dispatcher, client, args) */
    Py_ssize_t large;   /* resp.LARGE_BULK: such values keep the Python path's shared reply */
    /* memory.ENTRY_OVERHEAD, memory.REGION_OVERHEAD, layout.BLOCK_HEADER */
    Py_ssize_t entry_overhead, region_overhead, block_header;
    /* keyspace.TTL_OVERHEAD, memory._HEAP_SLACK, memory._HEAP_STALE_BYTES */
    Py_ssize_t ttl_overhead, heap_slack, heap_stale_max;
    PyObject *leases;      /* dispatcher.leases, and the dict of its leases by key */
    PyObject *lease_dict;
    PyObject *region_full; /* shm.writer.RegionFull, and the reply Dispatcher.store makes of it */
    PyObject *refused;
    /* Slot offsets: the dispatcher's, the engine's, its WatchedKeys', and those of the Client
     * and RegionWriter classes (the first met; another class is handed over). */
    Py_ssize_t busy, now, max_reply, d_leases, d_max_key, d_max_value, d_clock;
    Py_ssize_t heap, heap_stale;
    Py_ssize_t inherited, ahead, behind, deadlines, visited, hits, misses, region, clock;
    Py_ssize_t used, inserts, limit, max_key, max_value, watched;
    PyTypeObject *watched_type;
    Py_ssize_t changes;
    PyTypeObject *client_type;
    Py_ssize_t table_, nil, cmd, seen;
    PyTypeObject *region_type;
    Py_ssize_t region_max, publish, read, block_bytes, region_mm, begin_batch, end_batch;
    Typed *typed; /* the data-type commands (_fasttypes.c); NULL: none */
} Runner;

/* The engine's state for one request: new references, released by view_close. */
typedef struct {
    PyObject *ahead, *behind, *deadlines, *visited;
    PyObject *read;  /* the region's read, fetched at the first block met */
    PyObject *clock; /* engine._clock_ms, fetched at the first deadline met */
    Py_ssize_t hits, misses;
    /* A write's, set by write_open: the region (NULL: none) and its publish and block_bytes,
     * the engine's watched keys, and its numbers (used follows every write made here). */
    PyObject *region, *publish, *block_bytes, *watched;
    Py_ssize_t used, limit, max_key, max_value, region_max;
    /* What the writes moved, kept in C and written back once by view_close (a Python int per
     * key and counter cost more than a key's dict lookup): _used as it was, watched.changes
     * and _inserts to add. Nothing the command calls meanwhile reads them. */
    Py_ssize_t used_before, changes, inserts;
} View;

static void view_clear(View *v) {
    Py_CLEAR(v->ahead);
    Py_CLEAR(v->behind);
    Py_CLEAR(v->deadlines);
    Py_CLEAR(v->visited);
    Py_CLEAR(v->read);
    Py_CLEAR(v->clock);
    Py_CLEAR(v->region);
    Py_CLEAR(v->publish);
    Py_CLEAR(v->block_bytes);
    Py_CLEAR(v->watched);
}

/* FOUND when the engine can be read here; HAND_OVER when a region is being adopted (its keys
 * are adopted on first touch, in Python) or the engine's state is not what this code reads. */
static int view_open(Runner *r, View *v) {
    memset(v, 0, sizeof(*v));
    PyObject *engine = r->engine;
    if (SLOT(engine, r->inherited) != Py_None) return HAND_OVER;
    v->ahead = SLOT(engine, r->ahead);
    v->behind = SLOT(engine, r->behind);
    v->deadlines = SLOT(engine, r->deadlines);
    v->visited = SLOT(engine, r->visited);
    if (!v->ahead || !v->behind || !v->deadlines || !v->visited || !PyDict_Check(v->ahead) ||
        !PyDict_Check(v->behind) || !PyDict_Check(v->deadlines) || !PySet_Check(v->visited)) {
        memset(v, 0, sizeof(*v));
        return HAND_OVER;
    }
    Py_INCREF(v->ahead);
    Py_INCREF(v->behind);
    Py_INCREF(v->deadlines);
    Py_INCREF(v->visited);
    return FOUND;
}

/* engine.<offset> += n, on the engine's Python int. */
int add_count(PyObject *engine, Py_ssize_t offset, Py_ssize_t n) {
    PyObject *old = SLOT(engine, offset);
    if (old == NULL) {
        PyErr_SetString(PyExc_AttributeError, "an engine counter is unset");
        return -1;
    }
    PyObject *sum;
    if (n == 1) {
        sum = PyNumber_Add(old, s_one);
    } else {
        PyObject *delta = PyLong_FromSsize_t(n);
        sum = delta ? PyNumber_Add(old, delta) : NULL;
        Py_XDECREF(delta);
    }
    if (sum == NULL) return -1;
    Py_XSETREF(SLOT(engine, offset), sum);
    return 0;
}

/* engine._used = used, when the writes moved it. */
static int set_used(Runner *r, View *v) {
    if (v->used == v->used_before) return 0;
    PyObject *used = PyLong_FromSsize_t(v->used);
    if (used == NULL) return -1;
    Py_XSETREF(SLOT(r->engine, r->used), used);
    return 0;
}

/* Write the request's counts back (the engine keeps them in Python ints) and release; also
 * after a failed write, whose earlier keys are written (the error raised is kept). */
static int view_close(Runner *r, View *v) {
    Pending pending;
    pending_take(&pending);
    int rc = 0;
    if ((v->hits && add_count(r->engine, r->hits, v->hits) < 0) ||
        (v->misses && add_count(r->engine, r->misses, v->misses) < 0) ||
        (v->watched != NULL && v->changes && add_count(v->watched, r->changes, v->changes) < 0) ||
        (v->inserts && add_count(r->engine, r->inserts, v->inserts) < 0) ||
        (v->watched != NULL && set_used(r, v) < 0))
        rc = -1;
    view_clear(v);
    pending_restore(&pending);
    return rc;
}

/* MemoryEngine.get's lookup without its side effects: FOUND with *out a new reference to the
 * string, MISS, HAND_OVER (a deadline due, another type, a block without a region), -1. */
static int find(Runner *r, View *v, PyObject *key, PyObject **out) {
    *out = NULL;
    PyObject *value = PyDict_GetItemWithError(v->ahead, key);
    if (value == NULL) {
        if (PyErr_Occurred()) return -1;
        value = PyDict_GetItemWithError(v->behind, key);
        if (value == NULL) return PyErr_Occurred() ? -1 : MISS;
    }
    Py_INCREF(value); /* the clock and the region's read are calls: hold what we found */
    if (PyDict_GET_SIZE(v->deadlines)) {
        PyObject *deadline = PyDict_GetItemWithError(v->deadlines, key);
        if (deadline == NULL && PyErr_Occurred()) goto fail;
        if (deadline != NULL) {
            Py_INCREF(deadline);
            if (v->clock == NULL) v->clock = Py_XNewRef(SLOT(r->engine, r->clock));
            PyObject *now = v->clock ? PyObject_CallNoArgs(v->clock) : NULL;
            int due = now ? PyObject_RichCompareBool(deadline, now, Py_LE) : -1;
            Py_DECREF(deadline);
            Py_XDECREF(now);
            if (due < 0) goto fail;
            if (due) { /* expired on this read: the Python path removes it and counts it */
                Py_DECREF(value);
                return HAND_OVER;
            }
        }
    }
    if (PyBytes_CheckExact(value)) {
        *out = value;
        return FOUND;
    }
    if (!PyLong_CheckExact(value)) { /* a hash, list...: WRONGTYPE is the Python path's */
        Py_DECREF(value);
        return HAND_OVER;
    }
    if (v->read == NULL) {
        PyObject *region = SLOT(r->engine, r->region);
        if (region == NULL || region == Py_None) {
            Py_DECREF(value);
            return HAND_OVER;
        }
        v->read = PyObject_GetAttr(region, s_read);
        if (v->read == NULL) goto fail;
    }
    PyObject *string = PyObject_CallOneArg(v->read, value);
    Py_DECREF(value);
    if (string == NULL || !PyBytes_CheckExact(string)) {
        /* Let the Python path meet (and report) the same failure, with its side effects. */
        PyErr_Clear();
        Py_XDECREF(string);
        return HAND_OVER;
    }
    *out = string;
    return FOUND;
fail:
    Py_DECREF(value);
    return -1;
}

Py_ssize_t digits(Py_ssize_t n) {
    Py_ssize_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

char *put_header(char *p, char kind, Py_ssize_t n) {
    Py_ssize_t d = digits(n);
    *p++ = kind;
    for (Py_ssize_t i = d - 1; i >= 0; i--) {
        p[i] = (char)('0' + n % 10);
        n /= 10;
    }
    p += d;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static Py_ssize_t bulk_size(PyObject *value) {
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    return 1 + digits(n) + 2 + n + 2;
}

static char *put_bulk(char *p, PyObject *value) {
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    p = put_header(p, '$', n);
    memcpy(p, PyBytes_AS_STRING(value), (size_t)n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* GET key: the reply, or NULL with no error to hand over. */
static PyObject *answer_get(Runner *r, View *v, PyObject *client, PyObject *key) {
    PyObject *value;
    int rc = find(r, v, key, &value);
    if (rc < 0 || rc == HAND_OVER) return NULL;
    if (rc == MISS) {
        PyObject *nil = SLOT(client, r->nil);
        if (nil == NULL) return NULL;
        v->misses++;
        return Py_NewRef(nil);
    }
    if (PyBytes_GET_SIZE(value) >= r->large) {
        Py_DECREF(value);
        return NULL;
    }
    PyObject *reply = NULL;
    if (PySet_Add(v->visited, key) == 0) {
        v->hits++;
        reply = PyBytes_FromStringAndSize(NULL, bulk_size(value));
        if (reply) put_bulk(PyBytes_AS_STRING(reply), value);
    }
    Py_DECREF(value);
    return reply;
}

/* MGET key...: every key is looked up first, so that a hand-over leaves no side effect. */
static PyObject *answer_mget(Runner *r, View *v, PyObject *client, PyObject *args) {
    Py_ssize_t count = PyList_GET_SIZE(args) - 1;
    PyObject *reply = NULL, *nil = NULL;
    PyObject **values = PyMem_Calloc((size_t)count, sizeof(PyObject *));
    if (values == NULL) return PyErr_NoMemory();
    Py_ssize_t content = 0, size = 1 + digits(count) + 2, i;
    nil = Py_XNewRef(SLOT(client, r->nil));
    if (nil == NULL || !PyBytes_CheckExact(nil)) goto done;
    for (i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(args, i + 1);
        if (!PyBytes_CheckExact(key)) goto done;
        int rc = find(r, v, key, &values[i]);
        if (rc < 0 || rc == HAND_OVER) goto done;
        if (rc == MISS) {
            size += PyBytes_GET_SIZE(nil);
            continue;
        }
        if (PyBytes_GET_SIZE(values[i]) >= r->large) goto done;
        content += PyBytes_GET_SIZE(values[i]);
        size += bulk_size(values[i]);
    }
    PyObject *limit = SLOT(r->dispatcher, r->max_reply);
    if (limit == NULL || !PyLong_CheckExact(limit)) goto done;
    Py_ssize_t max_reply = PyLong_AsSsize_t(limit);
    if (max_reply == -1 && PyErr_Occurred()) goto done;
    if (content > max_reply) goto done; /* the Python path words the error */
    for (i = 0; i < count; i++) {
        if (values[i] == NULL) {
            v->misses++;
        } else {
            if (PySet_Add(v->visited, PyList_GET_ITEM(args, i + 1)) < 0) goto done;
            v->hits++;
        }
    }
    reply = PyBytes_FromStringAndSize(NULL, size);
    if (reply == NULL) goto done;
    char *p = put_header(PyBytes_AS_STRING(reply), '*', count);
    for (i = 0; i < count; i++) {
        if (values[i] == NULL) {
            memcpy(p, PyBytes_AS_STRING(nil), (size_t)PyBytes_GET_SIZE(nil));
            p += PyBytes_GET_SIZE(nil);
        } else {
            p = put_bulk(p, values[i]);
        }
    }
done:
    for (i = 0; i < count; i++) Py_XDECREF(values[i]);
    PyMem_Free(values);
    Py_XDECREF(nil);
    return reply;
}

/* -- writes ------------------------------------------------------------------------------ */

static int region_slots(Runner *r, PyTypeObject *type) {
    if ((r->region_max = slot_offset(type, s_max_value)) < 0 ||
        (r->publish = slot_offset(type, s_publish)) < 0 ||
        (r->read = slot_offset(type, s_read)) < 0 ||
        (r->block_bytes = slot_offset(type, s_block_bytes)) < 0 ||
        (r->region_mm = slot_offset(type, s_mm)) < 0 ||
        (r->begin_batch = slot_offset(type, s_begin_batch)) < 0 ||
        (r->end_batch = slot_offset(type, s_end_batch)) < 0)
        return -1;
    r->region_type = type;
    Py_INCREF(type);
    return 0;
}

/* View's write half: FOUND, or HAND_OVER when the engine's state is not what this code reads
 * (an attribute unset or of another type, a region of another class). */
static int write_open(Runner *r, View *v) {
    PyObject *engine = r->engine, *watched = SLOT(engine, r->watched);
    if (watched == NULL || Py_TYPE(watched) != r->watched_type) return HAND_OVER;
    if (slot_size(engine, r->used, &v->used) < 0 || slot_size(engine, r->limit, &v->limit) < 0 ||
        slot_size(engine, r->max_key, &v->max_key) < 0 ||
        slot_size(engine, r->max_value, &v->max_value) < 0)
        return HAND_OVER;
    v->used_before = v->used;
    PyObject *region = SLOT(engine, r->region);
    if (region == NULL) return HAND_OVER;
    if (region != Py_None) {
        if (Py_TYPE(region) != r->region_type) {
            if (r->region_type != NULL) return HAND_OVER;
            if (region_slots(r, Py_TYPE(region)) < 0) {
                PyErr_Clear(); /* not a class this code reads: writes stay in Python */
                return HAND_OVER;
            }
        }
        PyObject *publish = SLOT(region, r->publish), *block_bytes = SLOT(region, r->block_bytes),
                 *read = SLOT(region, r->read);
        if (publish == NULL || block_bytes == NULL || read == NULL ||
            slot_size(region, r->region_max, &v->region_max) < 0)
            return HAND_OVER;
        v->region = Py_NewRef(region);
        v->publish = Py_NewRef(publish);
        v->block_bytes = Py_NewRef(block_bytes);
        if (v->read == NULL) v->read = Py_NewRef(read);
    }
    v->watched = Py_NewRef(watched);
    return FOUND;
}

/* layout.block_size(n), as MemoryEngine.set inlines it: 16-byte steps up to 256, then 16 sizes
 * per doubling. */
static Py_ssize_t block_size(Py_ssize_t n) {
    if (n <= 256) return (n + 15) & ~(Py_ssize_t)15;
    Py_ssize_t step = (Py_ssize_t)1 << (63 - __builtin_clzll((unsigned long long)n) - 4);
    return (n + step - 1) & -step;
}

/* What the entry key -> value costs when the region takes the value (the cost MemoryEngine.set
 * checks the limit with), or -1 to hand over: not bytes, over a size limit (KeyTooLarge,
 * ValueTooLarge), or over the region's max_value. */
static Py_ssize_t entry_cost(Runner *r, View *v, PyObject *key, PyObject *value) {
    if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(value)) return -1;
    Py_ssize_t nk = PyBytes_GET_SIZE(key), nv = PyBytes_GET_SIZE(value);
    if (nk > v->max_key || nv > v->max_value) return -1;
    if (v->region == NULL) return nk + nv + r->entry_overhead;
    if (nv > v->region_max) return -1;
    return nk + r->entry_overhead + r->region_overhead + block_size(r->block_header + nk + nv);
}

/* A plain write of one key: what it replaces, and what the new entry costs. */
typedef struct {
    PyObject *holder;     /* the dict holding the key (borrowed from the View); NULL: absent */
    PyObject *old;        /* its value (a new reference); NULL: absent */
    Py_ssize_t old_cost;  /* MemoryEngine._cost of it */
    Py_ssize_t cost;      /* entry_cost of the new value */
    Py_ssize_t earlier;   /* MSET's: the last earlier pair of the same key, or -1 */
    PyObject *deadline;   /* its deadline, kept by the write (borrowed); NULL: none */
} Plan;

int holds(PyObject *dict, PyObject *key) {
    return PyDict_GET_SIZE(dict) ? PyDict_Contains(dict, key) : 0;
}

/* 1 when the key is watched or leased (a write is then Python's), 0, or -1. */
static int guarded(Runner *r, View *v, PyObject *key) {
    int rc = holds(v->watched, key);
    return rc ? rc : holds(r->lease_dict, key);
}

static int lookup(View *v, PyObject *key, Plan *p);

/* The key's entry as a plain write finds it, without its cost (find_old's first half, which
 * MSET runs for every key before the second): FOUND (p->old borrowed from the dict, NULL when
 * the key is absent), HAND_OVER when the key is watched, leased or has a deadline, or -1.
 * Borrowed, so that the value's memory is not touched yet: until price_old nothing runs that
 * could change the dicts (bytes hash and compare in C, no Python code). */
static int find_entry(Runner *r, View *v, PyObject *key, Plan *p) {
    int rc;
    p->holder = p->old = p->deadline = NULL;
    p->old_cost = 0;
    if ((rc = guarded(r, v, key)) != 0 || (rc = holds(v->deadlines, key)) != 0)
        return rc < 0 ? -1 : HAND_OVER;
    return lookup(v, key, p);
}

/* find_entry's lookup, the checks done. */
static int lookup(View *v, PyObject *key, Plan *p) {
    p->holder = v->ahead;
    PyObject *old = PyDict_GetItemWithError(v->ahead, key);
    if (old == NULL) {
        if (PyErr_Occurred()) return -1;
        p->holder = v->behind;
        old = PyDict_GetItemWithError(v->behind, key);
        if (old == NULL) {
            p->holder = NULL;
            return PyErr_Occurred() ? -1 : FOUND;
        }
    }
    p->old = old;
    return FOUND;
}

/* find_old's second half: p->old_cost, MemoryEngine._cost of the entry find_entry found.
 * FOUND (p->old now a new reference), or HAND_OVER (p->old NULL) when the value is of
 * another type. */
static int price_old(Runner *r, View *v, PyObject *key, Plan *p) {
    PyObject *old = p->old;
    if (old == NULL) return FOUND;
    Py_ssize_t nk = PyBytes_GET_SIZE(key);
    if (PyBytes_CheckExact(old)) {
        p->old_cost = nk + PyBytes_GET_SIZE(old) + r->entry_overhead;
        Py_INCREF(old);
        return FOUND;
    }
    if (PyLong_CheckExact(old) && v->region != NULL) {
        PyObject *bytes = PyObject_CallOneArg(v->block_bytes, old);
        Py_ssize_t n = bytes && PyLong_CheckExact(bytes) ? PyLong_AsSsize_t(bytes) : -1;
        Py_XDECREF(bytes);
        if (n >= 0) {
            p->old_cost = nk + r->entry_overhead + r->region_overhead + n;
            Py_INCREF(old);
            return FOUND;
        }
        PyErr_Clear(); /* the Python path meets (and reports) the same failure */
    } /* else a hash, list...: SET replaces it, in Python */
    p->old = NULL;
    return HAND_OVER;
}

/* The key's entry as a plain write finds it: FOUND (p->old NULL when absent), HAND_OVER when
 * the key is watched, leased, has a deadline or a value of another type, or -1. */
static int find_old(Runner *r, View *v, PyObject *key, Plan *p) {
    int rc = find_entry(r, v, key, p);
    return rc == FOUND ? price_old(r, v, key, p) : rc;
}

/* Whether the write fits without evicting (and is no EntryTooLarge): used - old + new <= limit.
 * p->cost is an upper bound of what the entry will cost (the heap's, if the region does not
 * take the value, is less), so the Python path would not evict either. */
static int fits(View *v, Plan *p) {
    return !v->limit || v->used - p->old_cost + p->cost <= v->limit;
}

/* MemoryEngine.set(key, value) for a plan find_old, entry_cost and fits accepted; Py_clears
 * p->old. 0 when done; 1 when the region refused the write (RegionFull): *refusal is then the
 * reply Dispatcher.store gives, and the engine is left as the Python path leaves it; -1. */
static int commit(Runner *r, View *v, PyObject *key, PyObject *value, Plan *p,
                  PyObject **refusal) {
    int rc = -1;
    PyObject *stored = NULL;
    if (v->region == NULL) {
        stored = Py_NewRef(value);
    } else {
        PyObject *handle = p->old && PyLong_CheckExact(p->old) ? p->old : s_zero;
        PyObject *argv[4] = {key, value, p->deadline ? p->deadline : s_zero, handle};
        stored = PyObject_Vectorcall(v->publish, argv, 4, NULL);
        if (stored == NULL) {
            /* Refused (RegionFull) before MemoryEngine.set changed anything: nor does this. */
            if (!PyErr_ExceptionMatches(r->region_full)) goto done;
#if PY_VERSION_HEX >= 0x030C0000
            PyObject *exc = PyErr_GetRaisedException();
#else
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            PyErr_NormalizeException(&type, &exc, &tb);
            Py_XDECREF(type);
            Py_XDECREF(tb);
#endif
            *refusal = PyObject_CallOneArg(r->refused, exc);
            Py_XDECREF(exc);
            rc = *refusal == NULL ? -1 : 1;
            goto done;
        }
        int taken = PyObject_IsTrue(stored); /* a block's offset, or 0: the value stays bytes */
        if (taken < 0) goto done;
        if (!taken) Py_SETREF(stored, Py_NewRef(value));
    }
    /* watched.changed(key): the key is not watched (find_old), so only the total moves. */
    v->changes++;
    /* A new key joins _ahead's end; an existing one keeps its place (OrderedDict's setitem).
     * A value rewritten in its block leaves the very handle the dict holds: setting it again
     * would change nothing but cost two more lookups of the key and one of its queue node. */
    if (stored != p->old && PyObject_SetItem(p->old ? p->holder : v->ahead, key, stored) < 0)
        goto done;
    if (p->old == NULL)
        v->inserts++;
    else if (PySet_Add(v->visited, key) < 0)
        goto done;
    Py_ssize_t cost = p->cost;
    if (v->region != NULL && PyBytes_CheckExact(stored)) /* not in the region: heap cost */
        cost = PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value) + r->entry_overhead;
    v->used += cost - p->old_cost;
    rc = 0;
done:
    Py_XDECREF(stored);
    Py_CLEAR(p->old);
    return rc;
}

/* One plain write and its reply (reply when done), or NULL (an error set, or none: hand over). */
static PyObject *write_one(Runner *r, View *v, PyObject *key, PyObject *value, Plan *p,
                           PyObject *reply) {
    if ((p->cost = entry_cost(r, v, key, value)) < 0 || !fits(v, p)) {
        Py_CLEAR(p->old);
        return NULL;
    }
    PyObject *refusal = NULL;
    int rc = commit(r, v, key, value, p, &refusal);
    return rc < 0 ? NULL : rc ? refusal : Py_NewRef(reply);
}

/* SET key value. */
static PyObject *answer_set(Runner *r, View *v, PyObject *key, PyObject *value) {
    Plan p;
    if (!PyBytes_CheckExact(key) || find_old(r, v, key, &p) != FOUND) return NULL;
    return write_one(r, v, key, value, &p, s_ok);
}

/* replies.parse_int: -?(0|[1-9][0-9]*), at most 20 bytes, a signed 64-bit value. 0 when it
 * is not one (the Python path words the error). */
int parse_int(PyObject *raw, long long *out) {
    const char *s = PyBytes_AS_STRING(raw);
    Py_ssize_t n = PyBytes_GET_SIZE(raw), i = s[0] == '-';
    if (n > 20 || i == n || (s[i] == '0' && n != i + 1)) return 0;
    unsigned long long magnitude = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(magnitude, 10, &magnitude) ||
            __builtin_add_overflow(magnitude, (unsigned)(s[i] - '0'), &magnitude))
            return 0;
    }
    if (s[0] != '-') {
        if (magnitude > (unsigned long long)LLONG_MAX) return 0;
        *out = (long long)magnitude;
    } else {
        if (magnitude > (unsigned long long)LLONG_MAX + 1) return 0;
        *out = magnitude ? -(long long)(magnitude - 1) - 1 : 0;
    }
    return 1;
}

/* -- deadlines: INCR's kept, EXPIRE's set ---------------------------------------------- */

/* An exact int as an int64: FOUND, or HAND_OVER (another type, out of range). */
static int as_int64(PyObject *value, long long *out) {
    int overflow = 0;
    if (!PyLong_CheckExact(value)) return HAND_OVER;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    return overflow ? HAND_OVER : FOUND;
}

/* engine._clock_ms() (fetched once per request, as find does): FOUND, HAND_OVER, or -1. */
static int clock_now(Runner *r, View *v, long long *now) {
    if (v->clock == NULL && (v->clock = Py_XNewRef(SLOT(r->engine, r->clock))) == NULL)
        return HAND_OVER;
    PyObject *value = PyObject_CallNoArgs(v->clock);
    if (value == NULL) return -1;
    int rc = as_int64(value, now);
    Py_DECREF(value);
    return rc;
}

/* find_old for a write that keeps the key's deadline (INCR's keep_ttl, EXPIRE's comparison):
 * one not due yet goes in p->deadline; a due one is HAND_OVER (the Python path expires the
 * key first). The clock is read into *now when now is not NULL, else only for a deadline. */
static int find_timed(Runner *r, View *v, PyObject *key, Plan *p, long long *now) {
    p->holder = p->old = p->deadline = NULL;
    p->old_cost = 0;
    int rc = guarded(r, v, key);
    if (rc != 0) return rc < 0 ? -1 : HAND_OVER;
    PyObject *deadline = NULL;
    if (PyDict_GET_SIZE(v->deadlines) &&
        (deadline = PyDict_GetItemWithError(v->deadlines, key)) == NULL && PyErr_Occurred())
        return -1;
    if (deadline != NULL || now != NULL) {
        long long t, when;
        Py_XINCREF(deadline); /* the clock is a call: hold what we found */
        rc = clock_now(r, v, &t);
        if (rc == FOUND && deadline != NULL && (rc = as_int64(deadline, &when)) == FOUND &&
            when <= t)
            rc = HAND_OVER;
        Py_XDECREF(deadline);
        if (rc != FOUND) return rc;
        if (now != NULL) *now = t;
    }
    if ((rc = lookup(v, key, p)) == FOUND) rc = price_old(r, v, key, p);
    p->deadline = deadline; /* the dict's: nothing here changes it before the write */
    return rc;
}

/* Whether MemoryEngine._heap_went_stale, after a push, would rebuild the heap: 1, 0, or -1
 * (no error set: the engine's state is not what this code reads). */
static int heap_rebuilds(Runner *r, View *v, PyObject *key) {
    PyObject *heap = SLOT(r->engine, r->heap);
    Py_ssize_t stale, live = PyDict_GET_SIZE(v->deadlines);
    if (heap == NULL || !PyList_CheckExact(heap) || slot_size(r->engine, r->heap_stale, &stale) < 0)
        return -1;
    stale += PyBytes_GET_SIZE(key);
    Py_ssize_t pinned = v->used / 4 > r->heap_stale_max ? v->used / 4 : r->heap_stale_max;
    return PyList_GET_SIZE(heap) + 1 > live + live / 2 + r->heap_slack || stale > pinned;
}

/* EXPIRE key seconds / PEXPIRE key milliseconds, no option: _expire, then
 * MemoryEngine.set_expire_at. Python's: an error, a deadline not in the future (the key is
 * deleted), one that makes the engine evict or rebuild its heap. */
static PyObject *answer_expire(Runner *r, View *v, PyObject *args, int which) {
    PyObject *key = PyList_GET_ITEM(args, 1), *raw = PyList_GET_ITEM(args, 2), *reply = NULL;
    long long when, now, old = 0;
    /* _expire adds the dispatcher's clock, the engine compares with its own: the same one */
    if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(raw) || !parse_int(raw, &when) ||
        SLOT(r->dispatcher, r->d_clock) != SLOT(r->engine, r->clock))
        return NULL;
    if (which == EXPIRE) { /* Redis's bounds, C divisions, as _expire checks them */
        if (when < LLONG_MIN / 1000 || when > LLONG_MAX / 1000) return NULL;
        when *= 1000;
    }
    Plan p;
    if (find_timed(r, v, key, &p, &now) != FOUND || __builtin_add_overflow(when, now, &when))
        return NULL;
    if (p.old == NULL) return Py_NewRef(s_int_zero); /* absent: no side effect */
    if (when <= now || (p.deadline != NULL && as_int64(p.deadline, &old) != FOUND)) goto done;
    int fresh = p.deadline == NULL;
    if (fresh ? v->limit && v->used + r->ttl_overhead > v->limit
              : when != old && heap_rebuilds(r, v, key) != 0)
        goto done;
    /* watched.changed(key) (not watched: find_timed), the use of the key. */
    v->changes++;
    if (PySet_Add(v->visited, key) < 0) goto done;
    if (when != old) {
        PyObject *deadline = PyLong_FromLongLong(when), *entry = NULL, *out = NULL;
        if (deadline != NULL && PyDict_SetItem(v->deadlines, key, deadline) == 0 &&
            (entry = PyTuple_Pack(2, deadline, key)) != NULL) {
            PyObject *argv[2] = {SLOT(r->engine, r->heap), entry};
            out = PyObject_Vectorcall(heappush, argv, 2, NULL);
        }
        Py_XDECREF(entry);
        if (out != NULL && v->region != NULL) { /* _publish_expire */
            Py_SETREF(out, NULL);
            PyObject *handle = PyLong_CheckExact(p.old) ? p.old : s_zero;
            out = PyObject_CallMethodObjArgs(v->region, s_set_expire, key, handle, deadline,
                                             NULL);
        }
        Py_XDECREF(deadline);
        if (out == NULL) goto done;
        Py_DECREF(out);
        if (fresh)
            v->used += r->ttl_overhead;
        else if (add_count(r->engine, r->heap_stale, PyBytes_GET_SIZE(key)) < 0)
            goto done;
    }
    reply = Py_NewRef(s_int_one);
done:
    Py_XDECREF(p.old);
    return reply;
}

/* INCR / DECR / INCRBY / DECRBY key [delta]: _incr, read as peek reads. */
static PyObject *answer_incr(Runner *r, View *v, PyObject *args, int which) {
    PyObject *key = PyList_GET_ITEM(args, 1), *reply = NULL, *value = NULL;
    long long delta = which == INCR ? 1 : -1, current = 0, result;
    if (which == INCRBY || which == DECRBY) {
        PyObject *raw = PyList_GET_ITEM(args, 2);
        if (!PyBytes_CheckExact(raw) || !parse_int(raw, &delta)) return NULL;
        if (which == DECRBY) {
            if (delta == LLONG_MIN) return NULL; /* "decrement would overflow" */
            delta = -delta;
        }
    }
    Plan p;
    if (!PyBytes_CheckExact(key) || find_timed(r, v, key, &p, NULL) != FOUND) return NULL;
    if (p.old != NULL) {
        PyObject *text = PyBytes_CheckExact(p.old) ? Py_NewRef(p.old)
                                                   : PyObject_CallOneArg(v->read, p.old);
        int parsed = text != NULL && PyBytes_CheckExact(text) && parse_int(text, &current);
        Py_XDECREF(text);
        if (!parsed) {
            PyErr_Clear(); /* not a number (or a failed read): the Python path's error */
            goto done;
        }
    }
    if (__builtin_add_overflow(current, delta, &result)) goto done;
    char text[32]; /* ":<digits>\r\n": the reply, and the new value inside it */
    int size = snprintf(text, sizeof(text), ":%lld\r\n", result);
    value = PyBytes_FromStringAndSize(text + 1, size - 3);
    PyObject *integer = value ? PyBytes_FromStringAndSize(text, size) : NULL;
    if (integer == NULL) goto done;
    reply = write_one(r, v, key, value, &p, integer);
    Py_DECREF(integer);
done:
    Py_XDECREF(value);
    Py_XDECREF(p.old);
    return reply;
}

/* Start loading the slot of the set where PySet_Add looks for key first (a hint only: the
 * key's hash is cached, and the address is computed from the set's own fields). */
static inline void prefetch_mark(PyObject *set, PyObject *key) {
    PySetObject *so = (PySetObject *)set;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash != -1) __builtin_prefetch(&so->table[(size_t)hash & (size_t)so->mask], 1);
}

/* Then the key that slot holds, which PySet_Add compares with key when their hashes match
 * (an equal bytes object of its own, read from memory of its own). */
static inline void prefetch_marked_key(PyObject *set, PyObject *key) {
    PySetObject *so = (PySetObject *)set;
    Py_hash_t hash = PyObject_Hash(key);
    setentry *entry = &so->table[(size_t)hash & (size_t)so->mask];
    if (hash != -1 && entry->hash == hash) __builtin_prefetch(entry->key);
}

/* Start loading the region blocks of the plans' old values (a hint only: a block's offset is
 * its handle, in the region's mapping, the writer's _mm). */
static void prefetch_blocks(Runner *r, View *v, Plan *plans, Py_ssize_t pairs) {
    Py_buffer region;
    PyObject *mm = v->region != NULL ? SLOT(v->region, r->region_mm) : NULL;
    if (mm == NULL) return;
    if (PyObject_GetBuffer(mm, &region, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* a closed region: publish reports it */
        return;
    }
    for (Py_ssize_t i = 0; i < pairs; i++) {
        PyObject *old = plans[i].old;
        Py_ssize_t block = old != NULL && PyLong_CheckExact(old) ? PyLong_AsSsize_t(old) : -1;
        if (block > 0 && block < region.len)
            __builtin_prefetch((char *)region.buf + block);
        else if (block == -1)
            PyErr_Clear(); /* an int too large for an offset: price_old hands it over */
    }
    PyBuffer_Release(&region);
}

/* MSET's pairs by key so far: an open-addressing table of pair indices (-1: free) by the
 * key's hash, which the engine's dict lookups then find cached in the bytes. A dict of index
 * ints cost a tenth of the whole command. */
typedef struct {
    Py_ssize_t *slots, mask, small[32];
} Latest;

/* 0, or -1 when out of memory. */
static int latest_open(Latest *t, Py_ssize_t pairs) {
    Py_ssize_t size = 32;
    while (size < 2 * pairs) size <<= 1; /* at most half full: probes stay short */
    t->slots = size == 32 ? t->small : PyMem_Malloc((size_t)size * sizeof(Py_ssize_t));
    t->mask = size - 1;
    if (t->slots == NULL) return -1;
    memset(t->slots, 0xff, (size_t)size * sizeof(Py_ssize_t));
    return 0;
}

static void latest_close(Latest *t) {
    if (t->slots != t->small) PyMem_Free(t->slots);
}

/* Pair i's key (bytes) is now the last pair of its key: the index of the pair that was, -1
 * when none, -2 on error. */
static Py_ssize_t latest_swap(Latest *t, PyObject *args, Py_ssize_t i) {
    PyObject *key = PyList_GET_ITEM(args, 1 + 2 * i);
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return -2;
    Py_ssize_t at = (Py_ssize_t)((size_t)hash & (size_t)t->mask), found;
    for (; (found = t->slots[at]) >= 0; at = (at + 1) & t->mask) {
        PyObject *other = PyList_GET_ITEM(args, 1 + 2 * found);
        Py_ssize_t n = PyBytes_GET_SIZE(key);
        if (PyObject_Hash(other) == hash && PyBytes_GET_SIZE(other) == n &&
            !memcmp(PyBytes_AS_STRING(other), PyBytes_AS_STRING(key), (size_t)n))
            break;
    }
    t->slots[at] = i;
    return found;
}

/* MSET key value [key value...]: every pair is checked before the first write, so that a
 * hand-over leaves no side effect. A key named twice is written twice, as _store_all does: its
 * first write is planned on the engine's state, the second finds that write. The other plans
 * hold until their write: a write changes no other key's entry when nothing is evicted. */
static PyObject *answer_mset(Runner *r, View *v, PyObject *args) {
    Py_ssize_t n = PyList_GET_SIZE(args), pairs = (n - 1) / 2, i, d_max_key, d_max_value;
    if (n % 2 == 0) return NULL; /* the arity error is Python's */
    if (slot_size(r->dispatcher, r->d_max_key, &d_max_key) < 0 ||
        slot_size(r->dispatcher, r->d_max_value, &d_max_value) < 0)
        return NULL;
    PyObject *reply = NULL;
    Plan *plans = PyMem_Calloc((size_t)pairs, sizeof(Plan));
    Py_ssize_t held = 0; /* plans[:held] hold a reference to their old value */
    Latest latest;
    if (latest_open(&latest, pairs) < 0 || plans == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* used after each write, bounded from above: every key's last value costs at most its
     * entry_cost, and what a write replaces is the key's original entry or its earlier pair. */
    Py_ssize_t bound = v->used;
    /* In passes (the lookups; the prefetches that need what they found; the costs), so that
     * what each key's write reads from memory the engine's dicts and the region scatter (the
     * int of its value, its block, its SIEVE mark's set slot and key) is loaded for all keys
     * at once, not one cache miss after the other. */
    for (i = 0; i < pairs; i++) {
        PyObject *key = PyList_GET_ITEM(args, 1 + 2 * i), *value = PyList_GET_ITEM(args, 2 + 2 * i);
        Plan *p = &plans[i];
        if ((p->cost = entry_cost(r, v, key, value)) < 0 || PyBytes_GET_SIZE(key) > d_max_key ||
            PyBytes_GET_SIZE(value) > d_max_value) /* _pairs' own limits, the dispatcher's */
            goto done;
        if ((p->earlier = latest_swap(&latest, args, i)) < -1) goto done;
        if (p->earlier < 0) {
            if (find_entry(r, v, key, p) != FOUND) goto done;
            if (p->old != NULL) {
                __builtin_prefetch(p->old);
                prefetch_mark(v->visited, key);
            }
        }
    }
    prefetch_blocks(r, v, plans, pairs);
    for (i = 0; i < pairs; i++)
        if (plans[i].old != NULL)
            prefetch_marked_key(v->visited, PyList_GET_ITEM(args, 1 + 2 * i));
    for (i = 0; i < pairs; i++) {
        Plan *p = &plans[i];
        if (p->earlier >= 0) {
            bound += p->cost - plans[p->earlier].cost;
        } else {
            if (price_old(r, v, PyList_GET_ITEM(args, 1 + 2 * i), p) != FOUND) goto done;
            bound += p->cost - p->old_cost;
        }
        held = i + 1;
        if (v->limit && bound > v->limit) goto done; /* it might evict: Python's */
    }
    /* seen_at_once: the region's begin_batch, and its end_batch (held) after the writes. */
    PyObject *end = NULL, *none;
    if (v->region != NULL) {
        PyObject *begin = SLOT(v->region, r->begin_batch);
        end = Py_XNewRef(SLOT(v->region, r->end_batch));
        if (begin == NULL || end == NULL || (none = PyObject_CallNoArgs(begin)) == NULL) {
            Py_XDECREF(end);
            goto done;
        }
        Py_DECREF(none);
    }
    PyObject *result = s_ok;
    Py_INCREF(result);
    for (i = 0; i < pairs; i++) {
        PyObject *key = PyList_GET_ITEM(args, 1 + 2 * i), *value = PyList_GET_ITEM(args, 2 + 2 * i);
        Plan *p = &plans[i];
        int rc = p->earlier >= 0 ? find_old(r, v, key, p) : FOUND;
        if (rc == FOUND && !fits(v, p)) rc = HAND_OVER;
        if (rc != FOUND) {
            if (rc == HAND_OVER) /* the checks above rule it out: a bug here, not a reply */
                PyErr_SetString(PyExc_SystemError, "MSET: a pair checked as plain is not");
            Py_CLEAR(result);
            break;
        }
        PyObject *refusal = NULL;
        rc = commit(r, v, key, value, p, &refusal);
        if (rc != 0) {
            Py_SETREF(result, refusal); /* RegionFull: _store_all's reply; or NULL */
            break;
        }
    }
    if (end != NULL) { /* seen_at_once's finally: also after an exception */
        Pending pending;
        pending_take(&pending);
        none = PyObject_CallNoArgs(end);
        pending_restore(&pending);
        if (none == NULL) Py_CLEAR(result);
        Py_XDECREF(none);
        Py_DECREF(end);
    }
    reply = result;
done:
    latest_close(&latest);
    if (plans != NULL) /* what was not written (commit releases what it wrote) */
        for (i = 0; i < held; i++) Py_XDECREF(plans[i].old);
    PyMem_Free(plans);
    return reply;
}

static int client_slots(Runner *r, PyTypeObject *type) {
    if ((r->table_ = slot_offset(type, s_table)) < 0 || (r->nil = slot_offset(type, s_nil)) < 0 ||
        (r->cmd = slot_offset(type, s_cmd)) < 0 || (r->seen = slot_offset(type, s_seen)) < 0)
        return -1;
    r->client_type = type;
    Py_INCREF(type);
    return 0;
}

/* The reply when the request is plain, else NULL (an error set, or none: hand over). */
static PyObject *answer(Runner *r, PyObject *client, PyObject *args) {
    if (!PyList_CheckExact(args) || PyList_GET_SIZE(args) < 2) return NULL;
    PyObject *name = PyList_GET_ITEM(args, 0);
    if (!PyBytes_CheckExact(name)) return NULL;
    PyObject *entry = PyDict_GetItemWithError(r->table, name);
    if (entry == NULL || !PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) return NULL;
    PyObject *handler = PyTuple_GET_ITEM(entry, 0);
    int which = 0, typed = -1;
    while (which < N_HANDLERS && handler != r->handlers[which]) which++;
    /* The arity errors are Python's; SET with options too. */
    static const Py_ssize_t arity[N_HANDLERS] = {2, 0, 3, 2, 2, 3, 3, 0, 3, 3};
    if (which == N_HANDLERS && (r->typed == NULL || (typed = typed_which(r->typed, handler)) < 0))
        return NULL;
    if (which < N_HANDLERS && arity[which] && PyList_GET_SIZE(args) != arity[which]) return NULL;

    if (Py_TYPE(client) != r->client_type) {
        if (r->client_type != NULL) return NULL;
        if (client_slots(r, Py_TYPE(client)) < 0) {
            PyErr_Clear(); /* not a class this code reads: always the Python path */
            return NULL;
        }
    }
    if (SLOT(client, r->table_) != r->table) return NULL; /* MULTI, subscribed, before AUTH */
    if (SLOT(r->dispatcher, r->busy) != Py_None || SLOT(r->dispatcher, r->now) == NULL) return NULL;

    PyObject *reply = NULL;
    View v;
    if (typed >= 0) { /* a data-type command: _fasttypes.c */
        reply = typed_answer(r->typed, SLOT(client, r->nil), args, typed);
        if (reply == NULL) return NULL;
        goto answered;
    }
    if (view_open(r, &v) != FOUND) return NULL;
    if (which == GET) {
        if (PyBytes_CheckExact(PyList_GET_ITEM(args, 1)))
            reply = answer_get(r, &v, client, PyList_GET_ITEM(args, 1));
    } else if (which == MGET) {
        reply = answer_mget(r, &v, client, args);
    } else if (SLOT(r->dispatcher, r->d_leases) == r->leases && write_open(r, &v) == FOUND) {
        /* From here on a write returns NULL without an error only before any side effect. */
        if (which == SET)
            reply = answer_set(r, &v, PyList_GET_ITEM(args, 1), PyList_GET_ITEM(args, 2));
        else if (which == MSET)
            reply = answer_mset(r, &v, args);
        else if (which == EXPIRE || which == PEXPIRE)
            reply = answer_expire(r, &v, args, which);
        else
            reply = answer_incr(r, &v, args, which);
    }
    if (view_close(r, &v) < 0) Py_CLEAR(reply);
    if (reply == NULL) return NULL;
answered:
    /* Dispatcher.execute's bookkeeping: CLIENT LIST's cmd and idle. */
    slot_set(client, r->cmd, name);
    slot_set(client, r->seen, SLOT(r->dispatcher, r->now));
    return reply;
}

static PyObject *runner_execute(Runner *r, PyObject *const *argv, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "execute(dispatcher, client, args)");
        return NULL;
    }
    if (argv[0] == r->dispatcher) {
        PyObject *reply = answer(r, argv[1], argv[2]);
        if (reply != NULL || PyErr_Occurred()) return reply;
    }
    return PyObject_Vectorcall(r->fallback, argv, 3, NULL);
}

static int runner_init(Runner *r, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"dispatcher", "handlers", "fallback", "large", "costs", "region_full",
                            "refused", "typed", NULL};
    PyObject *dispatcher, *handlers, *fallback, *region_full, *refused, *typed = NULL;
    Py_ssize_t large, entry_overhead, region_overhead, block_header;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!On(nnnnnn)OO|O!", names, &dispatcher,
                                     &PyTuple_Type, &handlers, &fallback, &large, &entry_overhead,
                                     &region_overhead, &block_header, &r->ttl_overhead,
                                     &r->heap_slack, &r->heap_stale_max, &region_full, &refused,
                                     &PyTuple_Type, &typed))
        return -1;
    if (PyTuple_GET_SIZE(handlers) != N_HANDLERS) {
        PyErr_Format(PyExc_TypeError, "handlers: %d handlers expected", N_HANDLERS);
        return -1;
    }
    PyObject *engine = NULL, *table = NULL, *leases = NULL, *lease_dict = NULL, *watched = NULL;
    if ((engine = PyObject_GetAttrString(dispatcher, "engine")) == NULL ||
        (table = PyObject_GetAttrString(dispatcher, "full_table")) == NULL ||
        (leases = PyObject_GetAttr(dispatcher, s_leases)) == NULL ||
        (lease_dict = PyObject_GetAttr(leases, s_leases_dict)) == NULL ||
        (watched = PyObject_GetAttr(engine, s_watched)) == NULL)
        goto fail;
    if (!PyDict_CheckExact(table) || !PyDict_CheckExact(lease_dict) || !PyDict_Check(watched)) {
        PyErr_SetString(PyExc_TypeError, "full_table and the leases must be dicts");
        goto fail;
    }
    PyTypeObject *dt = Py_TYPE(dispatcher), *et = Py_TYPE(engine), *wt = Py_TYPE(watched);
    if ((r->busy = slot_offset(dt, s_busy)) < 0 || (r->now = slot_offset(dt, s_now)) < 0 ||
        (r->max_reply = slot_offset(dt, s_max_reply_size)) < 0 ||
        (r->d_leases = slot_offset(dt, s_leases)) < 0 ||
        (r->d_max_key = slot_offset(dt, s_max_key_size)) < 0 ||
        (r->d_max_value = slot_offset(dt, s_max_value_size)) < 0 ||
        (r->d_clock = slot_offset(dt, s_d_clock)) < 0 || (r->heap = slot_offset(et, s_heap)) < 0 ||
        (r->heap_stale = slot_offset(et, s_heap_stale)) < 0 ||
        (r->inherited = slot_offset(et, s_inherited)) < 0 ||
        (r->ahead = slot_offset(et, s_ahead)) < 0 || (r->behind = slot_offset(et, s_behind)) < 0 ||
        (r->deadlines = slot_offset(et, s_deadlines)) < 0 ||
        (r->visited = slot_offset(et, s_visited)) < 0 || (r->hits = slot_offset(et, s_hits)) < 0 ||
        (r->misses = slot_offset(et, s_misses)) < 0 ||
        (r->region = slot_offset(et, s_region)) < 0 || (r->clock = slot_offset(et, s_clock_ms)) < 0 ||
        (r->used = slot_offset(et, s_used)) < 0 || (r->inserts = slot_offset(et, s_inserts)) < 0 ||
        (r->limit = slot_offset(et, s_memory_limit)) < 0 ||
        (r->max_key = slot_offset(et, s_engine_max_key)) < 0 ||
        (r->max_value = slot_offset(et, s_engine_max_value)) < 0 ||
        (r->watched = slot_offset(et, s_watched)) < 0 || (r->changes = slot_offset(wt, s_changes)) < 0)
        goto fail;
    typed_free(r->typed);
    r->typed = typed ? typed_new(dispatcher, engine, typed) : NULL;
    if (typed && r->typed == NULL) goto fail;
    for (int i = 0; i < N_HANDLERS; i++)
        Py_XSETREF(r->handlers[i], Py_NewRef(PyTuple_GET_ITEM(handlers, i)));
    Py_XSETREF(r->dispatcher, Py_NewRef(dispatcher));
    Py_XSETREF(r->engine, engine);
    Py_XSETREF(r->table, table);
    Py_XSETREF(r->leases, leases);
    Py_XSETREF(r->lease_dict, lease_dict);
    Py_XSETREF(r->watched_type, (PyTypeObject *)Py_NewRef(wt));
    Py_XSETREF(r->fallback, Py_NewRef(fallback));
    Py_XSETREF(r->region_full, Py_NewRef(region_full));
    Py_XSETREF(r->refused, Py_NewRef(refused));
    Py_DECREF(watched);
    r->large = large;
    r->entry_overhead = entry_overhead;
    r->region_overhead = region_overhead;
    r->block_header = block_header;
    return 0;
fail:
    Py_XDECREF(engine);
    Py_XDECREF(table);
    Py_XDECREF(leases);
    Py_XDECREF(lease_dict);
    Py_XDECREF(watched);
    return -1;
}

static int runner_traverse(Runner *r, visitproc visit, void *arg) {
    Py_VISIT(r->dispatcher);
    Py_VISIT(r->engine);
    Py_VISIT(r->table);
    for (int i = 0; i < N_HANDLERS; i++) Py_VISIT(r->handlers[i]);
    Py_VISIT(r->fallback);
    Py_VISIT(r->leases);
    Py_VISIT(r->lease_dict);
    Py_VISIT(r->region_full);
    Py_VISIT(r->refused);
    Py_VISIT(r->watched_type);
    Py_VISIT(r->client_type);
    Py_VISIT(r->region_type);
    return r->typed ? typed_traverse(r->typed, visit, arg) : 0;
}

static int runner_clear(Runner *r) {
    typed_free(r->typed);
    r->typed = NULL;
    Py_CLEAR(r->dispatcher);
    Py_CLEAR(r->engine);
    Py_CLEAR(r->table);
    for (int i = 0; i < N_HANDLERS; i++) Py_CLEAR(r->handlers[i]);
    Py_CLEAR(r->fallback);
    Py_CLEAR(r->leases);
    Py_CLEAR(r->lease_dict);
    Py_CLEAR(r->region_full);
    Py_CLEAR(r->refused);
    Py_CLEAR(r->watched_type);
    Py_CLEAR(r->client_type);
    Py_CLEAR(r->region_type);
    return 0;
}

static void runner_dealloc(Runner *r) {
    PyObject_GC_UnTrack(r);
    runner_clear(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef runner_methods[] = {
    {"execute", (PyCFunction)(void (*)(void))runner_execute, METH_FASTCALL,
     "execute(dispatcher, client, args): Dispatcher.execute, the plain cases in C."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RunnerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "blinkstore_gunicorn.server._fastcmd.Runner",
    .tp_basicsize = sizeof(Runner),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Runner(dispatcher, handlers, fallback, large, costs, region_full, refused): "
              "see execute.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)runner_init,
    .tp_dealloc = (destructor)runner_dealloc,
    .tp_traverse = (traverseproc)runner_traverse,
    .tp_clear = (inquiry)runner_clear,
    .tp_methods = runner_methods,
};

static struct PyModuleDef fastcmd_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "blinkstore_gunicorn.server._fastcmd",
    .m_doc = "Plain reads and writes answered in C (see server/fastpath.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastcmd(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_table, "table"},         {&s_busy, "busy"},
        {&s_now, "now"},             {&s_cmd, "cmd"},
        {&s_seen, "seen"},           {&s_nil, "nil"},
        {&s_inherited, "_inherited"}, {&s_ahead, "_ahead"},
        {&s_behind, "_behind"},      {&s_deadlines, "_deadlines"},
        {&s_visited, "_visited"},    {&s_hits, "_hits"},
        {&s_misses, "_misses"},      {&s_region, "_region"},
        {&s_read, "read"},           {&s_clock_ms, "_clock_ms"},
        {&s_max_reply_size, "max_reply_size"},
        {&s_leases, "leases"},       {&s_leases_dict, "held"},
        {&s_max_key_size, "max_key_size"}, {&s_max_value_size, "max_value_size"},
        {&s_engine_max_key, "_max_key_size"}, {&s_engine_max_value, "_max_value_size"},
        {&s_used, "_used"},          {&s_inserts, "_inserts"},
        {&s_memory_limit, "_memory_limit"}, {&s_watched, "watched"},
        {&s_changes, "changes"},     {&s_max_value, "max_value"},
        {&s_publish, "publish"},     {&s_block_bytes, "block_bytes"},
        {&s_begin_batch, "begin_batch"}, {&s_end_batch, "end_batch"},
        {&s_mm, "_mm"},
        {&s_heap, "_heap"},          {&s_heap_stale, "_heap_stale_bytes"},
        {&s_set_expire, "set_expire"}, {&s_d_clock, "clock_ms"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) return NULL;
    }
    s_one = PyLong_FromLong(1);
    s_zero = PyLong_FromLong(0);
    s_ok = PyBytes_FromString("+OK\r\n");
    s_int_one = PyBytes_FromString(":1\r\n");
    s_int_zero = PyBytes_FromString(":0\r\n");
    PyObject *heapq = PyImport_ImportModule("heapq");
    heappush = heapq ? PyObject_GetAttrString(heapq, "heappush") : NULL;
    Py_XDECREF(heapq);
    if (s_one == NULL || s_zero == NULL || s_ok == NULL || s_int_one == NULL ||
        s_int_zero == NULL || heappush == NULL || PyType_Ready(&RunnerType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&fastcmd_module);
    if (module == NULL) return NULL;
    Py_INCREF(&RunnerType);
    if (PyModule_AddObject(module, "Runner", (PyObject *)&RunnerType) < 0) {
        Py_DECREF(&RunnerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
