/* The plain data-type commands of a RESP connection, answered in C for server/_fastcmd.c's
 * Runner: LPUSH, RPUSH, LPOP, RPOP, SADD, HSET and LRANGE on a key that holds a container of
 * the right type, and the answers that need no container: SPOP and ZPOPMIN of an absent key,
 * and a ZADD that changes no score.
 *
 * As in _fastcmd.c, a request is answered here only in its plain case, and everything else is
 * handed to the Python path (Dispatcher.execute) before any side effect, so that the Python
 * path stays the reference: an absent key for a write (the container is made in Python, with
 * its entry in the shared region), a write that would leave it empty (the key goes, in Python),
 * another type (WRONGTYPE), a key with a deadline, a watched key, a client parked on the key
 * (a push wakes it: server/blocking.py), a write that may reach the memory limit (eviction,
 * EntryTooLarge), an element over a size limit, a reply over the client buffer limit or
 * holding a value of resp.LARGE_BULK bytes or more, an argument count or spelling the handler
 * would refuse, a region being adopted, and SPOP of a present set (its pick is random).
 *
 * What is done here is what the handlers (server/commands/lists.py, sets.py, hashes.py,
 * zsets.py) and engine/lists.py, sets.py, hashes.py, zsets.py do then, in the same order:
 * Keyspace.lookup's SIEVE mark and hit or miss count, the container's change (a deque's own
 * methods, set and dict inserts in the same order, so iteration orders match), its cost and
 * List.width, then Keyspace.resized's WATCH change count and the memory account. The element
 * costs are engine/typed.py's constants, passed in by server/fastpath.py.
 * tests/unit/test_fasttypes.py runs both paths on the same random commands and compares
 * replies and state, containers' contents and costs included.
 */
#include "_fastcmd.h"

#include <stddef.h>
#include <string.h>

enum { MISS = 0, FOUND = 1, HAND_OVER = 2 };

/* The commands, in the order of the handlers fastpath.py passes. */
enum { LPUSH, RPUSH, LPOP, RPOP, SADD, HSET, LRANGE, SPOP, ZADD, ZPOPMIN, N_TYPED };

/* The classes whose slots are read: where an offset comes from. */
enum { DISPATCHER, ENGINE, WATCHED, BLOCKED, LIST, SET, HASH, ZSET, N_CLASSES };

struct Typed {
    PyObject *dispatcher, *engine; /* borrowed: the Runner holds them and this */
    PyObject *handlers[N_TYPED];
    PyTypeObject *classes[N_CLASSES];
    PyTypeObject *deque;
    PyObject *appendleft, *append, *popleft, *pop; /* deque's methods */
    PyObject *empty, *zero;                        /* b"*0\r\n", b":0\r\n" */
    /* memory.ENTRY_OVERHEAD, typed.LIST_ITEM_OVERHEAD, SET_MEMBER_OVERHEAD,
     * HASH_FIELD_OVERHEAD, and resp.LARGE_BULK */
    Py_ssize_t entry_overhead, item_overhead, member_overhead, field_overhead, large;
    /* Slot offsets. */
    Py_ssize_t blocked, max_key, max_value, max_reply;
    Py_ssize_t inherited, ahead, behind, deadlines, visited, hits, misses, used, limit, watched;
    Py_ssize_t changes, by_key, cost, items, width, members, fields, scores;
};

static const struct {
    size_t at;
    int of;
    const char *name;
} SLOTS[] = {
    {offsetof(Typed, blocked), DISPATCHER, "blocked"},
    {offsetof(Typed, max_key), DISPATCHER, "max_key_size"},
    {offsetof(Typed, max_value), DISPATCHER, "max_value_size"},
    {offsetof(Typed, max_reply), DISPATCHER, "max_reply_size"},
    {offsetof(Typed, inherited), ENGINE, "_inherited"},
    {offsetof(Typed, ahead), ENGINE, "_ahead"},
    {offsetof(Typed, behind), ENGINE, "_behind"},
    {offsetof(Typed, deadlines), ENGINE, "_deadlines"},
    {offsetof(Typed, visited), ENGINE, "_visited"},
    {offsetof(Typed, hits), ENGINE, "_hits"},
    {offsetof(Typed, misses), ENGINE, "_misses"},
    {offsetof(Typed, used), ENGINE, "_used"},
    {offsetof(Typed, limit), ENGINE, "_memory_limit"},
    {offsetof(Typed, watched), ENGINE, "watched"},
    {offsetof(Typed, changes), WATCHED, "changes"},
    {offsetof(Typed, by_key), BLOCKED, "_by_key"},
    {offsetof(Typed, cost), LIST, "cost"},
    {offsetof(Typed, items), LIST, "items"},
    {offsetof(Typed, width), LIST, "width"},
    {offsetof(Typed, members), SET, "members"},
    {offsetof(Typed, fields), HASH, "fields"},
    {offsetof(Typed, scores), ZSET, "scores"},
};

static int set_size(PyObject *obj, Py_ssize_t offset, Py_ssize_t n) {
    PyObject *value = PyLong_FromSsize_t(n);
    if (value == NULL) return -1;
    Py_XSETREF(SLOT(obj, offset), value);
    return 0;
}

/* Keyspace.lookup(key, cls) without its side effects: FOUND (*out: the container, borrowed),
 * MISS, HAND_OVER (a region being adopted, a key with a deadline, another type, an engine
 * state this code does not read), or -1. */
static int lookup(Typed *t, PyObject *key, int cls, PyObject **out) {
    PyObject *engine = t->engine, *ahead = SLOT(engine, t->ahead),
             *behind = SLOT(engine, t->behind), *deadlines = SLOT(engine, t->deadlines),
             *visited = SLOT(engine, t->visited);
    if (!PyBytes_CheckExact(key) || SLOT(engine, t->inherited) != Py_None || ahead == NULL ||
        behind == NULL || deadlines == NULL || visited == NULL || !PyDict_Check(ahead) ||
        !PyDict_Check(behind) || !PyDict_Check(deadlines) || !PySet_Check(visited))
        return HAND_OVER;
    PyObject *value = PyDict_GetItemWithError(ahead, key);
    if (value == NULL) {
        if (PyErr_Occurred()) return -1;
        value = PyDict_GetItemWithError(behind, key);
        if (value == NULL) return PyErr_Occurred() ? -1 : MISS;
    }
    int rc = holds(deadlines, key); /* due or not, the Python path reads it */
    if (rc) return rc < 0 ? -1 : HAND_OVER;
    if (Py_TYPE(value) != t->classes[cls]) return HAND_OVER; /* WRONGTYPE is Python's */
    *out = value;
    return FOUND;
}

/* A hit's side effects (Keyspace.lookup): the key's SIEVE mark, the hit count. */
static int use(Typed *t, PyObject *key) {
    if (PySet_Add(SLOT(t->engine, t->visited), key) < 0) return -1;
    return add_count(t->engine, t->hits, 1);
}

/* A miss's answer: ``misses`` lookups counted, then ``reply`` (NULL: hand over). */
static PyObject *missed(Typed *t, Py_ssize_t misses, PyObject *reply) {
    if (reply == NULL || !PyBytes_CheckExact(reply)) return NULL;
    return add_count(t->engine, t->misses, misses) < 0 ? NULL : Py_NewRef(reply);
}

/* Whether a write of key's container (costing ``cost``) can be done here: 1, 0 to hand over,
 * -1. Not when the key is watched (its count is Python's), when a client is parked on it and
 * the write ``wakes`` it, or when against a memory limit the write may evict or be refused:
 * Keyspace.writable's checks for ``growth`` more bytes (the most the write adds), and
 * Keyspace.resized's once ``shrink`` bytes went. */
static int may_write(Typed *t, PyObject *key, Py_ssize_t cost, Py_ssize_t growth,
                     Py_ssize_t shrink, int wakes) {
    PyObject *watched = SLOT(t->engine, t->watched);
    Py_ssize_t used, limit;
    if (watched == NULL || Py_TYPE(watched) != t->classes[WATCHED] ||
        slot_size(t->engine, t->used, &used) < 0 || slot_size(t->engine, t->limit, &limit) < 0)
        return 0;
    int rc = holds(watched, key);
    if (rc) return rc < 0 ? -1 : 0;
    if (wakes) {
        PyObject *blocked = SLOT(t->dispatcher, t->blocked);
        if (blocked == NULL || Py_TYPE(blocked) != t->classes[BLOCKED]) return 0;
        PyObject *by_key = SLOT(blocked, t->by_key), *queue;
        if (by_key == NULL || !PyDict_Check(by_key)) return 0;
        if ((queue = PyDict_GetItemWithError(by_key, key)) != NULL) /* BlockedPops.ready's test */
            return PyObject_Size(queue) ? -1 + (PyErr_Occurred() == NULL) : 1;
        if (PyErr_Occurred()) return -1;
    }
    if (!limit) return 1;
    Py_ssize_t entry = PyBytes_GET_SIZE(key) + t->entry_overhead + cost;
    if (growth && (entry + growth > limit || used + growth > limit)) return 0;
    return used + growth - shrink <= limit;
}

/* Keyspace.resized for a container left with elements and nothing to evict: the change count
 * (the key is not watched, may_write's test, but the total tells a snapshot one is due), the
 * container's new cost, and the account. */
static int resized(Typed *t, PyObject *container, Py_ssize_t old_cost, Py_ssize_t cost) {
    if (add_count(SLOT(t->engine, t->watched), t->changes, 1) < 0) return -1;
    if (set_size(container, t->cost, cost) < 0) return -1;
    return cost == old_cost ? 0 : add_count(t->engine, t->used, cost - old_cost);
}

static PyObject *integer(Py_ssize_t n) {
    return PyBytes_FromFormat(":%zd\r\n", n);
}

/* The list at args[1] and its state, for a write: FOUND, or HAND_OVER / MISS / -1. */
static int list_at(Typed *t, PyObject *args, PyObject **list, PyObject **items,
                   Py_ssize_t *cost) {
    int rc = lookup(t, PyList_GET_ITEM(args, 1), LIST, list);
    if (rc != FOUND) return rc;
    *items = SLOT(*list, t->items);
    if (*items == NULL || Py_TYPE(*items) != t->deque || slot_size(*list, t->cost, cost) < 0)
        return HAND_OVER;
    return FOUND;
}

/* LPUSH / RPUSH key element [element...] onto a list: lists.push. */
static PyObject *push(Typed *t, PyObject *args, int left) {
    Py_ssize_t n = PyList_GET_SIZE(args), growth = 0, width = -1, max_value, cost, old_width, i;
    if (slot_size(t->dispatcher, t->max_value, &max_value) < 0) return NULL;
    for (i = 2; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(args, i);
        if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) > max_value) return NULL;
        Py_ssize_t size = PyBytes_GET_SIZE(value);
        growth += size + t->item_overhead;
        width = i == 2 || width == size ? size : -1; /* lists._width: -1 once two differ */
    }
    PyObject *key = PyList_GET_ITEM(args, 1), *list, *items;
    /* A miss: the list is made in Python, with its entry in the region. */
    if (list_at(t, args, &list, &items, &cost) != FOUND ||
        slot_size(list, t->width, &old_width) < 0 || may_write(t, key, cost, growth, 0, 1) <= 0 ||
        use(t, key) < 0)
        return NULL;
    if (set_size(list, t->width, PyObject_Size(items) && old_width != width ? -1 : width) < 0)
        return NULL;
    PyObject *add = left ? t->appendleft : t->append;
    for (i = 2; i < n; i++) {
        PyObject *argv[2] = {items, PyList_GET_ITEM(args, i)};
        PyObject *none = PyObject_Vectorcall(add, argv, 2, NULL);
        if (none == NULL) return NULL;
        Py_DECREF(none);
    }
    if (resized(t, list, cost, cost + growth) < 0) return NULL;
    return integer(PyObject_Size(items));
}

/* LPOP / RPOP key of a list that keeps an item: lists.pop(key, 1). */
static PyObject *pop(Typed *t, PyObject *nil, PyObject *args, int left) {
    PyObject *key = PyList_GET_ITEM(args, 1), *list, *items, *reply = NULL;
    Py_ssize_t cost;
    int rc = list_at(t, args, &list, &items, &cost);
    if (rc == MISS) return missed(t, 1, nil);
    if (rc != FOUND || PyObject_Size(items) < 2) return NULL; /* the last item: the key goes */
    PyObject *item = PySequence_GetItem(items, left ? 0 : -1);
    if (item == NULL) return NULL;
    Py_ssize_t size = PyBytes_CheckExact(item) ? PyBytes_GET_SIZE(item) : t->large;
    if (size >= t->large || may_write(t, key, cost, 0, size + t->item_overhead, 0) <= 0 ||
        use(t, key) < 0)
        goto done;
    PyObject *taken = PyObject_Vectorcall(left ? t->popleft : t->pop, &items, 1, NULL);
    if (taken == NULL) goto done;
    Py_DECREF(taken); /* the item read above */
    if (resized(t, list, cost, cost - size - t->item_overhead) < 0) goto done;
    reply = PyBytes_FromStringAndSize(NULL, 1 + digits(size) + 2 + size + 2);
    if (reply != NULL) {
        char *p = put_header(PyBytes_AS_STRING(reply), '$', size);
        memcpy(p, PyBytes_AS_STRING(item), (size_t)size);
        memcpy(p + size, "\r\n", 2);
    }
done:
    Py_DECREF(item);
    return reply;
}

/* LRANGE key start stop: the handler's _clamp, the reply size check, replies.bulk_items. */
static PyObject *lrange(Typed *t, PyObject *args) {
    PyObject *raw_start = PyList_GET_ITEM(args, 2), *raw_stop = PyList_GET_ITEM(args, 3);
    long long start, stop;
    if (!PyBytes_CheckExact(raw_start) || !PyBytes_CheckExact(raw_stop) ||
        !parse_int(raw_start, &start) || !parse_int(raw_stop, &stop))
        return NULL; /* the error is Python's */
    PyObject *key = PyList_GET_ITEM(args, 1), *list, *items, *reply = NULL, *iter = NULL;
    Py_ssize_t width, max_reply;
    int rc = lookup(t, key, LIST, &list);
    if (rc == MISS) return missed(t, 1, t->empty);
    items = rc == FOUND ? SLOT(list, t->items) : NULL;
    if (items == NULL || Py_TYPE(items) != t->deque || slot_size(list, t->width, &width) < 0 ||
        slot_size(t->dispatcher, t->max_reply, &max_reply) < 0)
        return NULL;
    long long size = PyObject_Size(items);
    if (start < 0) start = start + size > 0 ? start + size : 0;
    if (stop < 0) stop += size;
    if (stop > size - 1) stop = size - 1;
    Py_ssize_t count = start > stop ? 0 : (Py_ssize_t)(stop - start + 1), i;
    PyObject **chosen = PyMem_Malloc(sizeof(PyObject *) * (size_t)(count ? count : 1));
    if (chosen == NULL) return PyErr_NoMemory();
    Py_ssize_t content = 0, length = 1 + digits(count) + 2;
    if (count && (iter = PyObject_GetIter(items)) == NULL) goto done;
    for (i = 0; i < start + count && count; i++) { /* items are held by the list meanwhile */
        PyObject *item = PyIter_Next(iter);
        if (item == NULL) goto done;
        Py_DECREF(item);
        if (i < start) continue;
        if (!PyBytes_CheckExact(item)) goto done;
        Py_ssize_t n = PyBytes_GET_SIZE(item);
        /* bulk_list encodes such a value with resp.bulk, which remembers it: Python's. */
        if (width < 0 && n >= t->large) goto done;
        chosen[i - start] = item;
        content += width < 0 ? n : width;
        length += 1 + digits(width < 0 ? n : width) + 2 + n + 2;
    }
    if (content > max_reply || use(t, key) < 0) goto done; /* the refusal is Python's */
    if ((reply = PyBytes_FromStringAndSize(NULL, length)) == NULL) goto done;
    char *p = put_header(PyBytes_AS_STRING(reply), '*', count);
    for (i = 0; i < count; i++) { /* bulk_items writes the list's width in every header */
        Py_ssize_t n = PyBytes_GET_SIZE(chosen[i]);
        p = put_header(p, '$', width < 0 ? n : width);
        memcpy(p, PyBytes_AS_STRING(chosen[i]), (size_t)n);
        memcpy(p + n, "\r\n", 2);
        p += n + 2;
    }
done:
    Py_XDECREF(iter);
    PyMem_Free(chosen);
    return reply;
}

/* SADD key member [member...] to a set: sets.sadd, members added in their order. */
static PyObject *sadd(Typed *t, PyObject *args) {
    Py_ssize_t n = PyList_GET_SIZE(args), growth = 0, max_key, cost, i;
    if (slot_size(t->dispatcher, t->max_key, &max_key) < 0) return NULL;
    for (i = 2; i < n; i++) { /* the handler's fits(member, b"") */
        PyObject *member = PyList_GET_ITEM(args, i);
        if (!PyBytes_CheckExact(member) || PyBytes_GET_SIZE(member) > max_key) return NULL;
        growth += PyBytes_GET_SIZE(member) + t->member_overhead;
    }
    PyObject *key = PyList_GET_ITEM(args, 1), *set, *members;
    if (lookup(t, key, SET, &set) != FOUND) return NULL;
    members = SLOT(set, t->members);
    if (members == NULL || !PySet_CheckExact(members) || slot_size(set, t->cost, &cost) < 0 ||
        may_write(t, key, cost, growth, 0, 0) <= 0 || use(t, key) < 0)
        return NULL;
    Py_ssize_t before = PySet_GET_SIZE(members), added = cost;
    for (i = 2; i < n; i++) {
        PyObject *member = PyList_GET_ITEM(args, i);
        Py_ssize_t was = PySet_GET_SIZE(members);
        if (PySet_Add(members, member) < 0) return NULL;
        if (PySet_GET_SIZE(members) > was) added += PyBytes_GET_SIZE(member) + t->member_overhead;
    }
    /* None new: unchanged, and a WATCH on the key holds. */
    if (added != cost && resized(t, set, cost, added) < 0) return NULL;
    return integer(PySet_GET_SIZE(members) - before);
}

/* HSET key field value [field value...] on a hash: hashes.hset. */
static PyObject *hset(Typed *t, PyObject *args) {
    Py_ssize_t n = PyList_GET_SIZE(args), growth = 0, max_key, max_value, cost, added = 0, i;
    if (n % 2 || slot_size(t->dispatcher, t->max_key, &max_key) < 0 ||
        slot_size(t->dispatcher, t->max_value, &max_value) < 0)
        return NULL;
    for (i = 2; i < n; i += 2) { /* the handler's fits(field, value), pair by pair */
        PyObject *field = PyList_GET_ITEM(args, i), *value = PyList_GET_ITEM(args, i + 1);
        if (!PyBytes_CheckExact(field) || !PyBytes_CheckExact(value) ||
            PyBytes_GET_SIZE(field) > max_key || PyBytes_GET_SIZE(value) > max_value)
            return NULL;
        growth += PyBytes_GET_SIZE(field) + PyBytes_GET_SIZE(value) + t->field_overhead;
    }
    PyObject *key = PyList_GET_ITEM(args, 1), *hash, *fields;
    if (lookup(t, key, HASH, &hash) != FOUND) return NULL;
    fields = SLOT(hash, t->fields);
    if (fields == NULL || !PyDict_CheckExact(fields) || slot_size(hash, t->cost, &cost) < 0)
        return NULL;
    for (i = 2; i < n; i += 2) { /* the values replaced are bytes, as hset reads them */
        PyObject *previous = PyDict_GetItemWithError(fields, PyList_GET_ITEM(args, i));
        if (previous == NULL ? PyErr_Occurred() != NULL : !PyBytes_CheckExact(previous))
            return NULL;
    }
    if (may_write(t, key, cost, growth, 0, 0) <= 0 || use(t, key) < 0) return NULL;
    Py_ssize_t new_cost = cost;
    for (i = 2; i < n; i += 2) {
        PyObject *field = PyList_GET_ITEM(args, i), *value = PyList_GET_ITEM(args, i + 1);
        PyObject *previous = PyDict_GetItemWithError(fields, field);
        if (previous == NULL) {
            if (PyErr_Occurred()) return NULL;
            added++;
            new_cost += PyBytes_GET_SIZE(field) + PyBytes_GET_SIZE(value) + t->field_overhead;
        } else {
            new_cost += PyBytes_GET_SIZE(value) - PyBytes_GET_SIZE(previous);
        }
        if (PyDict_SetItem(fields, field, value) < 0) return NULL;
    }
    if (resized(t, hash, cost, new_cost) < 0) return NULL;
    return integer(added);
}

/* ZADD key score member [score member...] where every member is there with that score: no
 * write (zsets.zadd), one lookup. Scores of up to 15 digits only: replies.parse_float reads
 * them with float(), exactly, as this does. */
static PyObject *zadd(Typed *t, PyObject *args) {
    Py_ssize_t n = PyList_GET_SIZE(args), max_key, i;
    PyObject *key = PyList_GET_ITEM(args, 1), *zset, *scores;
    if (n % 2 || slot_size(t->dispatcher, t->max_key, &max_key) < 0 ||
        lookup(t, key, ZSET, &zset) != FOUND)
        return NULL;
    scores = SLOT(zset, t->scores);
    if (scores == NULL || !PyDict_CheckExact(scores)) return NULL;
    for (i = 2; i < n; i += 2) {
        PyObject *raw = PyList_GET_ITEM(args, i), *member = PyList_GET_ITEM(args, i + 1);
        if (!PyBytes_CheckExact(raw) || !PyBytes_CheckExact(member) ||
            PyBytes_GET_SIZE(raw) < 1 || PyBytes_GET_SIZE(raw) > 15 ||
            PyBytes_GET_SIZE(member) > max_key)
            return NULL;
        const char *text = PyBytes_AS_STRING(raw);
        long long score = 0;
        for (Py_ssize_t j = 0; j < PyBytes_GET_SIZE(raw); j++) {
            if (text[j] < '0' || text[j] > '9') return NULL; /* a flag, a sign, a fraction */
            score = score * 10 + (text[j] - '0');
        }
        PyObject *old = PyDict_GetItemWithError(scores, member);
        if (old == NULL || !PyFloat_CheckExact(old) || PyFloat_AS_DOUBLE(old) != (double)score)
            return NULL; /* a new member or a new score: a write, Python's */
    }
    return use(t, key) < 0 ? NULL : Py_NewRef(t->zero);
}

PyObject *typed_answer(Typed *t, PyObject *nil, PyObject *args, int which) {
    Py_ssize_t n = PyList_GET_SIZE(args);
    PyObject *found;
    switch (which) {
    case LPUSH:
    case RPUSH:
        return n >= 3 ? push(t, args, which == LPUSH) : NULL;
    case LPOP:
    case RPOP:
        return n == 2 ? pop(t, nil, args, which == LPOP) : NULL;
    case SADD:
        return n >= 3 ? sadd(t, args) : NULL;
    case HSET:
        return n >= 4 ? hset(t, args) : NULL;
    case LRANGE:
        return n == 4 ? lrange(t, args) : NULL;
    case SPOP: /* of an absent key: a present set's pick is random, Python's */
        if (n != 2 || lookup(t, PyList_GET_ITEM(args, 1), SET, &found) != MISS) return NULL;
        return missed(t, 1, nil);
    case ZPOPMIN: /* of an absent key: the handler and zrem_range both look it up */
        if (n != 2 || lookup(t, PyList_GET_ITEM(args, 1), ZSET, &found) != MISS) return NULL;
        return missed(t, 2, t->empty);
    case ZADD:
        return n >= 4 ? zadd(t, args) : NULL;
    }
    return NULL;
}

int typed_which(Typed *t, PyObject *handler) {
    for (int i = 0; i < N_TYPED; i++)
        if (t->handlers[i] == handler) return i;
    return -1;
}

int typed_traverse(Typed *t, visitproc visit, void *arg) {
    for (int i = 0; i < N_TYPED; i++) Py_VISIT(t->handlers[i]);
    for (int i = 0; i < N_CLASSES; i++) Py_VISIT(t->classes[i]);
    Py_VISIT(t->deque);
    return 0;
}

void typed_free(Typed *t) {
    if (t == NULL) return;
    for (int i = 0; i < N_TYPED; i++) Py_XDECREF(t->handlers[i]);
    for (int i = 0; i < N_CLASSES; i++) Py_XDECREF(t->classes[i]);
    Py_XDECREF(t->deque);
    Py_XDECREF(t->appendleft);
    Py_XDECREF(t->append);
    Py_XDECREF(t->popleft);
    Py_XDECREF(t->pop);
    Py_XDECREF(t->empty);
    Py_XDECREF(t->zero);
    PyMem_Free(t);
}

/* ``spec``: (handlers, (List, Set, Hash, ZSet), deque, (ENTRY_OVERHEAD, LIST_ITEM_OVERHEAD,
 * SET_MEMBER_OVERHEAD, HASH_FIELD_OVERHEAD, LARGE_BULK)). NULL with an error set when a class
 * lacks a slot this code reads (a stale build: fastpath.py keeps the Python path). */
Typed *typed_new(PyObject *dispatcher, PyObject *engine, PyObject *spec) {
    PyObject *handlers, *classes, *deque, *watched = NULL, *blocked = NULL;
    Typed *t = PyMem_Calloc(1, sizeof(Typed));
    if (t == NULL) return (Typed *)PyErr_NoMemory();
    t->dispatcher = dispatcher;
    t->engine = engine;
    if (!PyArg_ParseTuple(spec, "O!O!O!(nnnnn)", &PyTuple_Type, &handlers, &PyTuple_Type,
                          &classes, &PyType_Type, &deque, &t->entry_overhead,
                          &t->item_overhead, &t->member_overhead, &t->field_overhead,
                          &t->large))
        goto fail;
    if (PyTuple_GET_SIZE(handlers) != N_TYPED || PyTuple_GET_SIZE(classes) != 4) {
        PyErr_SetString(PyExc_TypeError, "typed: the handlers or the classes are not all there");
        goto fail;
    }
    for (int i = 0; i < N_TYPED; i++) t->handlers[i] = Py_NewRef(PyTuple_GET_ITEM(handlers, i));
    if ((watched = PyObject_GetAttrString(engine, "watched")) == NULL ||
        (blocked = PyObject_GetAttrString(dispatcher, "blocked")) == NULL)
        goto fail;
    PyObject *of[N_CLASSES] = {(PyObject *)Py_TYPE(dispatcher), (PyObject *)Py_TYPE(engine),
                               (PyObject *)Py_TYPE(watched), (PyObject *)Py_TYPE(blocked)};
    for (int i = 0; i < 4; i++) of[LIST + i] = PyTuple_GET_ITEM(classes, i);
    for (int i = 0; i < N_CLASSES; i++) {
        if (!PyType_Check(of[i])) {
            PyErr_SetString(PyExc_TypeError, "typed: a class expected");
            goto fail;
        }
        t->classes[i] = (PyTypeObject *)Py_NewRef(of[i]);
    }
    for (size_t i = 0; i < sizeof(SLOTS) / sizeof(SLOTS[0]); i++) {
        PyObject *name = PyUnicode_InternFromString(SLOTS[i].name);
        Py_ssize_t offset = name ? slot_offset(t->classes[SLOTS[i].of], name) : -1;
        Py_XDECREF(name);
        if (offset < 0) goto fail;
        *(Py_ssize_t *)((char *)t + SLOTS[i].at) = offset;
    }
    t->deque = (PyTypeObject *)Py_NewRef(deque);
    if ((t->appendleft = PyObject_GetAttrString(deque, "appendleft")) == NULL ||
        (t->append = PyObject_GetAttrString(deque, "append")) == NULL ||
        (t->popleft = PyObject_GetAttrString(deque, "popleft")) == NULL ||
        (t->pop = PyObject_GetAttrString(deque, "pop")) == NULL ||
        (t->empty = PyBytes_FromString("*0\r\n")) == NULL ||
        (t->zero = PyBytes_FromString(":0\r\n")) == NULL)
        goto fail;
    Py_DECREF(watched);
    Py_DECREF(blocked);
    return t;
fail:
    Py_XDECREF(watched);
    Py_XDECREF(blocked);
    typed_free(t);
    return NULL;
}
