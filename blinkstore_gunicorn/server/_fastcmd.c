/* The plain GET and MGET of a RESP connection, answered in C (optional; see server/fastpath.py).
 *
 * A Runner stands in for Dispatcher.execute (same arguments, same result). It answers a request
 * only in the plain case: a list of bytes naming, in the client's table, the very handler of
 * GET or MGET (so an upstream's routing, MULTI's queueing table, subscribed mode, a spelling the
 * table lacks all differ), the full table, no busy script, no region being adopted, and every
 * key either absent or a string (bytes, or a block of the shared region) whose deadline has not
 * come and whose value is below LARGE_BULK. Anything else goes to the Python path, unchanged and
 * before any side effect here, so the Python path stays the reference for every other case.
 *
 * What it does is what cmd_get / cmd_mget -> MemoryEngine.get do, with the same side effects in
 * the same state: client.cmd and client.seen (Dispatcher.execute), the key's SIEVE visited mark
 * (engine._visited), the engine's _hits/_misses, and the reply bytes (resp.bulk, the client's
 * nil, resp.array). It reads the engine's private attributes, so engine/memory.py and this file
 * change together; tests/unit/test_fastcmd.py runs both paths on the same random commands and
 * compares replies and state. Attributes are read and written at their __slots__ offsets, found
 * once from the classes' member descriptors (a generic getattr per attribute cost as much as
 * the Python path's whole miss); a class without such a slot makes the Runner refuse to be
 * built, and fastpath.py then keeps the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#ifndef Py_T_OBJECT_EX /* before 3.12 */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

enum { MISS = 0, FOUND = 1, HAND_OVER = 2 };

static PyObject *s_table, *s_busy, *s_now, *s_cmd, *s_seen, *s_nil, *s_inherited, *s_ahead,
    *s_behind, *s_deadlines, *s_visited, *s_hits, *s_misses, *s_region, *s_read, *s_clock_ms,
    *s_max_reply_size, *s_one;

/* The offset of the writable object slot ``name`` of ``type``, or -1 with an error set. */
static Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name) {
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

/* The slot's value (borrowed; NULL when unset: the Python path then raises). */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static void slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value) {
    Py_INCREF(value);
    Py_XSETREF(SLOT(obj, offset), value);
}

typedef struct {
    PyObject_HEAD
    PyObject *dispatcher;
    PyObject *engine;
    PyObject *table; /* the dispatcher's full table: upstream routing edits it in place */
    PyObject *get_handler;
    PyObject *mget_handler;
    PyObject *fallback; /* Dispatcher.execute, called as fallback(dispatcher, client, args) */
    Py_ssize_t large;   /* resp.LARGE_BULK: such values keep the Python path's shared reply */
    /* Slot offsets: the dispatcher's, the engine's, and those of the Client class (the first
     * client's; a client of another class is handed over). */
    Py_ssize_t busy, now, max_reply;
    Py_ssize_t inherited, ahead, behind, deadlines, visited, hits, misses, region, clock;
    PyTypeObject *client_type;
    Py_ssize_t table_, nil, cmd, seen;
} Runner;

/* The engine's state for one request: new references, released by view_close. */
typedef struct {
    PyObject *ahead, *behind, *deadlines, *visited;
    PyObject *read;  /* the region's read, fetched at the first block met */
    PyObject *clock; /* engine._clock_ms, fetched at the first deadline met */
    Py_ssize_t hits, misses;
} View;

static void view_clear(View *v) {
    Py_CLEAR(v->ahead);
    Py_CLEAR(v->behind);
    Py_CLEAR(v->deadlines);
    Py_CLEAR(v->visited);
    Py_CLEAR(v->read);
    Py_CLEAR(v->clock);
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
static int add_count(PyObject *engine, Py_ssize_t offset, Py_ssize_t n) {
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

/* Write the request's counts back (the engine keeps them in Python ints) and release. */
static int view_close(Runner *r, View *v) {
    int rc = 0;
    if (v->hits && add_count(r->engine, r->hits, v->hits) < 0) rc = -1;
    if (v->misses && rc == 0 && add_count(r->engine, r->misses, v->misses) < 0) rc = -1;
    view_clear(v);
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

static Py_ssize_t digits(Py_ssize_t n) {
    Py_ssize_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/* "<kind><n>\r\n" at p; returns the end. */
static char *put_header(char *p, char kind, Py_ssize_t n) {
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
    int get = handler == r->get_handler;
    if (!get && handler != r->mget_handler) return NULL;
    if (get && PyList_GET_SIZE(args) != 2) return NULL; /* the arity error is Python's */
    if (get && !PyBytes_CheckExact(PyList_GET_ITEM(args, 1))) return NULL;

    if (Py_TYPE(client) != r->client_type) {
        if (r->client_type != NULL) return NULL;
        if (client_slots(r, Py_TYPE(client)) < 0) {
            PyErr_Clear(); /* not a class this code reads: always the Python path */
            return NULL;
        }
    }
    if (SLOT(client, r->table_) != r->table) return NULL; /* MULTI, subscribed, before AUTH */
    if (SLOT(r->dispatcher, r->busy) != Py_None || SLOT(r->dispatcher, r->now) == NULL) return NULL;

    View v;
    int open = view_open(r, &v);
    if (open != FOUND) return NULL;
    PyObject *reply = get ? answer_get(r, &v, client, PyList_GET_ITEM(args, 1))
                          : answer_mget(r, &v, client, args);
    if (view_close(r, &v) < 0) Py_CLEAR(reply);
    if (reply == NULL) return NULL;
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
    static char *names[] = {"dispatcher", "get", "mget", "fallback", "large", NULL};
    PyObject *dispatcher, *get, *mget, *fallback;
    Py_ssize_t large;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOn", names, &dispatcher, &get, &mget,
                                     &fallback, &large))
        return -1;
    PyObject *engine = PyObject_GetAttrString(dispatcher, "engine");
    if (engine == NULL) return -1;
    PyObject *table = PyObject_GetAttrString(dispatcher, "full_table");
    if (table == NULL || !PyDict_CheckExact(table)) {
        Py_DECREF(engine);
        Py_XDECREF(table);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "full_table must be a dict");
        return -1;
    }
    PyTypeObject *dt = Py_TYPE(dispatcher), *et = Py_TYPE(engine);
    if ((r->busy = slot_offset(dt, s_busy)) < 0 || (r->now = slot_offset(dt, s_now)) < 0 ||
        (r->max_reply = slot_offset(dt, s_max_reply_size)) < 0 ||
        (r->inherited = slot_offset(et, s_inherited)) < 0 ||
        (r->ahead = slot_offset(et, s_ahead)) < 0 || (r->behind = slot_offset(et, s_behind)) < 0 ||
        (r->deadlines = slot_offset(et, s_deadlines)) < 0 ||
        (r->visited = slot_offset(et, s_visited)) < 0 || (r->hits = slot_offset(et, s_hits)) < 0 ||
        (r->misses = slot_offset(et, s_misses)) < 0 ||
        (r->region = slot_offset(et, s_region)) < 0 || (r->clock = slot_offset(et, s_clock_ms)) < 0) {
        Py_DECREF(engine);
        Py_DECREF(table);
        return -1;
    }
    Py_INCREF(dispatcher);
    Py_INCREF(get);
    Py_INCREF(mget);
    Py_INCREF(fallback);
    Py_XSETREF(r->dispatcher, dispatcher);
    Py_XSETREF(r->engine, engine);
    Py_XSETREF(r->table, table);
    Py_XSETREF(r->get_handler, get);
    Py_XSETREF(r->mget_handler, mget);
    Py_XSETREF(r->fallback, fallback);
    r->large = large;
    return 0;
}

static int runner_traverse(Runner *r, visitproc visit, void *arg) {
    Py_VISIT(r->dispatcher);
    Py_VISIT(r->engine);
    Py_VISIT(r->table);
    Py_VISIT(r->get_handler);
    Py_VISIT(r->mget_handler);
    Py_VISIT(r->fallback);
    Py_VISIT(r->client_type);
    return 0;
}

static int runner_clear(Runner *r) {
    Py_CLEAR(r->dispatcher);
    Py_CLEAR(r->engine);
    Py_CLEAR(r->table);
    Py_CLEAR(r->get_handler);
    Py_CLEAR(r->mget_handler);
    Py_CLEAR(r->fallback);
    Py_CLEAR(r->client_type);
    return 0;
}

static void runner_dealloc(Runner *r) {
    PyObject_GC_UnTrack(r);
    runner_clear(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef runner_methods[] = {
    {"execute", (PyCFunction)(void (*)(void))runner_execute, METH_FASTCALL,
     "execute(dispatcher, client, args): Dispatcher.execute, plain GET and MGET in C."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RunnerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "blinkstore_gunicorn.server._fastcmd.Runner",
    .tp_basicsize = sizeof(Runner),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Runner(dispatcher, get, mget, fallback, large): see execute.",
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
    .m_doc = "Plain GET and MGET answered in C (see server/fastpath.py).",
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
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) return NULL;
    }
    s_one = PyLong_FromLong(1);
    if (s_one == NULL || PyType_Ready(&RunnerType) < 0) return NULL;
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
