/* redis.call, redis.pcall and the script's reply encoding as Lua C functions (optional; see
 * server/scripting/bridge.py, which builds a Bridge and hands it to the sandbox).
 *
 * The Lua state is lupa's (lupa.lua51). Its shared object exports the Lua 5.1 C API, which this
 * module takes with dlopen(RTLD_NOLOAD) on the already imported module and dlsym, checking every
 * symbol: it links against no Lua of its own, so it cannot disagree with lupa's about the
 * state's layout, and it reads none of lupa's own structures.
 *
 * A Lua C function gets the lua_State it runs on; only installing the functions needs one from
 * Python. That one is a coroutine the sandbox makes for the purpose: Lua 5.1 prints a thread as
 * "thread: 0x<address of its lua_State>", a coroutine shares the registry and globals of the
 * state that made it, and a coroutine never resumed is a plain stack the C API may use. The
 * pointer is trusted only after the registry, read through it, holds the random token the
 * sandbox put there (Bridge.install); the coroutine is only used during the install.
 *
 * redis.call(name, arg...) formats the arguments as the Python path does (scripts.Scripting.
 * _call: strings as they are, numbers "%d" when integral else "%.14g", anything else refused),
 * then, holding the GIL, runs the command: the plain GET/SET/INCR... through server/_fastcmd.c's
 * Runner (its fallback is the Python path, so what it does not answer is answered there), every
 * other command through the Python path itself (Scripting.execute: its checks, its texts). Only
 * the read-only and "the script wrote" rules are applied here first, for the fast commands, in
 * the order the Python path applies them. The RESP reply is copied into a buffer the bridge
 * owns, the GIL released, and the reply turned into Lua values (convert.py's rules). Nothing
 * that a Lua error (a longjmp, also on a failed allocation) could skip holds a Python reference
 * or the GIL at that point: buffers belong to the bridge, freed with it.
 *
 * encode(value, nil_reply) is the sandbox's Lua reply encoder (sandbox.py, "encode"), in C:
 * the same bytes for every value, or nil past the nesting limit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The Lua 5.1 API this file uses (lua.h's declarations and constants, Lua 5.1.5). */
typedef struct lua_State lua_State;
typedef int (*lua_CFunction)(lua_State *L);
typedef double lua_Number;
#define LUA_REGISTRYINDEX (-10000)
#define LUA_GLOBALSINDEX (-10002)
#define lua_upvalueindex(i) (LUA_GLOBALSINDEX - (i))
enum { LUA_TNIL, LUA_TBOOLEAN, LUA_TLIGHTUSERDATA, LUA_TNUMBER, LUA_TSTRING, LUA_TTABLE };

static struct {
    int (*gettop)(lua_State *);
    void (*settop)(lua_State *, int);
    int (*type)(lua_State *, int);
    const char *(*tolstring)(lua_State *, int, size_t *);
    lua_Number (*tonumber)(lua_State *, int);
    int (*toboolean)(lua_State *, int);
    void *(*touserdata)(lua_State *, int);
    void (*pushlstring)(lua_State *, const char *, size_t);
    void (*pushnumber)(lua_State *, lua_Number);
    void (*pushboolean)(lua_State *, int);
    void (*pushvalue)(lua_State *, int);
    void (*pushcclosure)(lua_State *, lua_CFunction, int);
    void (*createtable)(lua_State *, int, int);
    void (*getfield)(lua_State *, int, const char *);
    void (*setfield)(lua_State *, int, const char *);
    void (*rawget)(lua_State *, int);
    void (*rawgeti)(lua_State *, int, int);
    void (*rawseti)(lua_State *, int, int);
    int (*setmetatable)(lua_State *, int);
    void *(*newuserdata)(lua_State *, size_t);
    int (*checkstack)(lua_State *, int);
    int (*error)(lua_State *);
    int (*status)(lua_State *);
    int (*cpcall)(lua_State *, lua_CFunction, void *);
    void (*call)(lua_State *, int, int);
} lua;

static int loaded;

typedef struct {
    PyObject_HEAD
    PyObject *execute;    /* Scripting.execute(args) -> the reply bytes: the Python path */
    PyObject *runner;     /* _fastcmd's Runner.execute(dispatcher, client, args), or None */
    PyObject *fast;       /* the spellings the runner answers -> (arity, writes) */
    PyObject *state;      /* the Scripting: its _read_only and _run */
    PyObject *dispatcher; /* what the runner is called with */
    PyObject *client;
    char *reply; /* the last command's reply, copied out of Python */
    size_t reply_cap;
    char *out; /* encode's output */
    size_t out_cap, out_len;
    int max_depth;
} Bridge;

static PyObject *s_read_only, *s_run, *s_wrote;

/* ---- arguments ------------------------------------------------------------------------- */

/* n in decimal at p (room for 20 characters): its length. By hand: glibc's snprintf costs
 * about 800 instructions a number, more than the rest of a short reply's encoding. */
static int put_int(char *p, long long n) {
    char digits[20];
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    int len = 0, at = 0;
    do {
        digits[len++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0) p[at++] = '-';
    while (len) p[at++] = digits[--len];
    return at;
}

/* The text of a number argument, as convert.argument makes it from lupa's value: lupa hands
 * Python an int when the double is integral and in range, else a float. */
static int format_number(lua_Number n, char *buf, size_t size) {
    if (n >= -9223372036854775808.0 && n < 9223372036854775808.0 && (double)(long long)n == n)
        return put_int(buf, (long long)n);
    if (isnan(n)) return snprintf(buf, size, "nan"); /* Python prints no sign for a NaN */
    return snprintf(buf, size, "%.14g", n);
}

#define NUMBER_TEXT 32
#define SMALL_ARGS 16

/* ---- the reply into Lua ---------------------------------------------------------------- */

/* The integer of "<digits>\r\n" at *p (RESP's header), moving *p past the CRLF; -1 when
 * malformed (no header here is negative but -1, read by the callers as null). */
static int read_line(const char **p, const char *end, long long *value, const char **text,
                     size_t *len) {
    const char *start = *p, *eol = start;
    while (eol + 1 < end && !(eol[0] == '\r' && eol[1] == '\n')) eol++;
    if (eol + 1 >= end) return -1;
    *text = start;
    *len = (size_t)(eol - start);
    *p = eol + 2;
    if (value != NULL) {
        char digits[24];
        if (*len == 0 || *len >= sizeof(digits)) return -1;
        memcpy(digits, start, *len);
        digits[*len] = '\0';
        char *stop;
        *value = strtoll(digits, &stop, 10);
        if (*stop != '\0') return -1;
    }
    return 0;
}

/* {<field> = text} on the stack. */
static void push_message(lua_State *L, const char *field, const char *text, size_t len) {
    lua.createtable(L, 0, 1);
    lua.pushlstring(L, text, len);
    lua.setfield(L, -2, field);
}

/* One RESP2 reply at *p as the Lua value convert.to_lua makes of it; -1 when malformed. */
static int push_reply(lua_State *L, const char **p, const char *end, int depth) {
    if (*p >= end || depth > 1000 || !lua.checkstack(L, 4)) return -1;
    char kind = *(*p)++;
    const char *text;
    size_t len;
    long long n;
    switch (kind) {
    case '+':
    case '-':
        if (read_line(p, end, NULL, &text, &len) < 0) return -1;
        push_message(L, kind == '+' ? "ok" : "err", text, len);
        return 0;
    case ':':
        if (read_line(p, end, &n, &text, &len) < 0) return -1;
        lua.pushnumber(L, (lua_Number)n);
        return 0;
    case '$':
        if (read_line(p, end, &n, &text, &len) < 0) return -1;
        if (n < 0) {
            lua.pushboolean(L, 0);
            return 0;
        }
        if ((long long)(end - *p) < n + 2) return -1;
        lua.pushlstring(L, *p, (size_t)n);
        *p += n + 2;
        return 0;
    case '*':
        if (read_line(p, end, &n, &text, &len) < 0) return -1;
        if (n < 0) {
            lua.pushboolean(L, 0);
            return 0;
        }
        lua.createtable(L, n < 1 << 20 ? (int)n : 0, 0);
        for (long long i = 1; i <= n; i++) {
            if (push_reply(L, p, end, depth + 1) < 0) return -1;
            lua.rawseti(L, -2, (int)i);
        }
        return 0;
    default:
        return -1;
    }
}

/* ---- redis.call / redis.pcall ---------------------------------------------------------- */

enum { REPLY, REFUSED, FAILED };

/* With the GIL: REPLY, the command's reply copied into b->reply (*size bytes), or FAILED, a
 * Python exception's text there instead. */
static int run_command(Bridge *b, int argc, const char **ptr, const size_t *len, size_t *size) {
    PyObject *args = PyList_New(argc), *reply = NULL;
    if (args == NULL) goto failed;
    for (int i = 0; i < argc; i++) {
        PyObject *arg = PyBytes_FromStringAndSize(ptr[i], (Py_ssize_t)len[i]);
        if (arg == NULL) goto failed;
        PyList_SET_ITEM(args, i, arg);
    }
    PyObject *spec = b->runner == Py_None ? NULL : PyDict_GetItemWithError(b->fast, PyList_GET_ITEM(args, 0));
    if (spec == NULL && PyErr_Occurred()) goto failed;
    int fast = 0;
    if (spec != NULL) {
        /* (arity, writes): the checks Scripting.execute makes before the handler, for the
         * cases where it would call it (arity first, then the read-only rule). */
        long arity = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
        int writes = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 1));
        if (arity == -1 && PyErr_Occurred()) goto failed;
        fast = argc == arity || (arity < 0 && argc >= -arity);
        if (fast && writes) {
            PyObject *read_only = PyObject_GetAttr(b->state, s_read_only);
            if (read_only == NULL) goto failed;
            fast = read_only == Py_False;
            Py_DECREF(read_only);
            if (fast) {
                PyObject *run = PyObject_GetAttr(b->state, s_run);
                int rc = run == NULL ? -1 : run == Py_None ? 0 : PyObject_SetAttr(run, s_wrote, Py_True);
                Py_XDECREF(run);
                if (rc < 0) goto failed;
            }
        }
    }
    if (fast) {
        PyObject *call[3] = {b->dispatcher, b->client, args};
        reply = PyObject_Vectorcall(b->runner, call, 3, NULL);
    } else {
        reply = PyObject_CallOneArg(b->execute, args);
    }
    if (reply == NULL) goto failed;
    if (!PyBytes_CheckExact(reply) || PyBytes_GET_SIZE(reply) == 0) {
        PyErr_SetString(PyExc_TypeError, "a command's reply is not bytes");
        goto failed;
    }
    *size = (size_t)PyBytes_GET_SIZE(reply);
    if (*size > b->reply_cap) {
        char *grown = PyMem_RawRealloc(b->reply, *size);
        if (grown == NULL) {
            PyErr_NoMemory();
            goto failed;
        }
        b->reply = grown;
        b->reply_cap = *size;
    }
    memcpy(b->reply, PyBytes_AS_STRING(reply), *size);
    Py_DECREF(reply);
    Py_DECREF(args);
    return REPLY;
failed:
    Py_XDECREF(reply);
    Py_XDECREF(args);
    {
        /* An exception from the Python path (a bug or MemoryError): a Lua error with its
         * text, as lupa raises one for a failing Python callback. */
        PyObject *exc_type, *exc, *tb;
        PyErr_Fetch(&exc_type, &exc, &tb);
        PyObject *text = exc ? PyObject_Str(exc) : NULL;
        const char *utf8 = text ? PyUnicode_AsUTF8AndSize(text, (Py_ssize_t *)size) : NULL;
        if (utf8 == NULL) {
            PyErr_Clear();
            utf8 = "error in a command called from the script";
            *size = strlen(utf8);
        }
        char *grown = *size > b->reply_cap ? PyMem_RawRealloc(b->reply, *size) : b->reply;
        if (grown != NULL) {
            b->reply = grown;
            if (*size > b->reply_cap) b->reply_cap = *size;
            memcpy(b->reply, utf8, *size);
        } else {
            *size = 0;
        }
        Py_XDECREF(text);
        Py_XDECREF(exc_type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
    }
    return FAILED;
}

static const char ERR_NO_ARGS[] = "ERR Please specify at least one argument for this redis lib call";
static const char ERR_ARG_TYPE[] = "ERR Lua redis lib command arguments must be strings or integers";

/* A refusal: {err = text}, raised by redis.call, returned by redis.pcall. */
static int refuse(lua_State *L, int raise, const char *text, size_t len) {
    push_message(L, "err", text, len);
    return raise ? lua.error(L) : 1;
}

static Bridge *bridge_of(lua_State *L) {
    return *(Bridge **)lua.touserdata(L, lua_upvalueindex(1));
}

static int l_call(lua_State *L) {
    Bridge *b = bridge_of(L);
    int raise = lua.toboolean(L, lua_upvalueindex(2));
    int argc = lua.gettop(L);
    if (argc == 0) return refuse(L, raise, ERR_NO_ARGS, sizeof(ERR_NO_ARGS) - 1);

    /* The arguments' texts: Lua's own strings (they stay on the stack meanwhile), numbers
     * formatted into numbers[]. Plain C memory: no Lua error can happen while it is held. */
    const char *small_ptr[SMALL_ARGS];
    size_t small_len[SMALL_ARGS];
    char small_numbers[SMALL_ARGS][NUMBER_TEXT];
    const char **ptr = small_ptr;
    size_t *len = small_len;
    char(*numbers)[NUMBER_TEXT] = small_numbers;
    if (argc > SMALL_ARGS) {
        ptr = malloc(sizeof(*ptr) * (size_t)argc);
        len = malloc(sizeof(*len) * (size_t)argc);
        numbers = malloc(sizeof(*numbers) * (size_t)argc);
        if (ptr == NULL || len == NULL || numbers == NULL) {
            free(ptr);
            free(len);
            free(numbers);
            return refuse(L, raise, "ERR not enough memory", 21);
        }
    }
    int refused = 0;
    for (int i = 0; i < argc && !refused; i++) {
        int kind = lua.type(L, i + 1);
        if (kind == LUA_TSTRING) {
            ptr[i] = lua.tolstring(L, i + 1, &len[i]);
        } else if (kind == LUA_TNUMBER) {
            int n = format_number(lua.tonumber(L, i + 1), numbers[i], NUMBER_TEXT);
            ptr[i] = numbers[i];
            len[i] = (size_t)n;
        } else {
            refused = 1;
        }
    }
    int outcome = REFUSED;
    size_t size = 0;
    if (!refused) {
        PyGILState_STATE gil = PyGILState_Ensure();
        outcome = run_command(b, argc, ptr, len, &size);
        PyGILState_Release(gil);
    }
    if (argc > SMALL_ARGS) {
        free(ptr);
        free(len);
        free(numbers);
    }
    if (outcome == REFUSED) return refuse(L, raise, ERR_ARG_TYPE, sizeof(ERR_ARG_TYPE) - 1);
    if (outcome == FAILED) {
        lua.pushlstring(L, b->reply, size);
        return lua.error(L);
    }
    /* From here on only Lua's allocations may fail (a longjmp), and nothing is held. */
    const char *p = b->reply, *end = b->reply + size;
    int top = lua.gettop(L);
    if (push_reply(L, &p, end, 0) < 0 || p != end) {
        /* Not RESP2: after redis.setresp(3) the commands answer in RESP3, which the sandbox's
         * converter (resp3.py, the third upvalue) reads; it raises on a malformed reply. */
        lua.settop(L, top);
        lua.pushvalue(L, lua_upvalueindex(3));
        lua.pushlstring(L, b->reply, size);
        lua.call(L, 1, 1);
    }
    return raise && b->reply[0] == '-' ? lua.error(L) : 1;
}

/* ---- the script's reply ---------------------------------------------------------------- */

static int out_reserve(Bridge *b, size_t more) {
    if (b->out_len + more <= b->out_cap) return 0;
    size_t cap = b->out_cap ? b->out_cap : 256;
    while (cap < b->out_len + more) cap *= 2;
    char *grown = PyMem_RawRealloc(b->out, cap);
    if (grown == NULL) return -1;
    b->out = grown;
    b->out_cap = cap;
    return 0;
}

static int out_put(Bridge *b, const char *text, size_t len) {
    if (out_reserve(b, len) < 0) return -1;
    memcpy(b->out + b->out_len, text, len);
    b->out_len += len;
    return 0;
}

static int out_header(Bridge *b, char kind, long long n) {
    if (out_reserve(b, 24) < 0) return -1;
    char *p = b->out + b->out_len;
    *p = kind;
    int len = 1 + put_int(p + 1, n);
    p[len++] = '\r';
    p[len++] = '\n';
    b->out_len += (size_t)len;
    return 0;
}

/* "+text" or "-text" with CR and LF as spaces (sandbox.lua's gsub). */
static int out_line(Bridge *b, char kind, const char *text, size_t len) {
    if (out_reserve(b, len + 3) < 0) return -1;
    char *p = b->out + b->out_len;
    *p++ = kind;
    for (size_t i = 0; i < len; i++) *p++ = (text[i] == '\r' || text[i] == '\n') ? ' ' : text[i];
    *p++ = '\r';
    *p++ = '\n';
    b->out_len += len + 3;
    return 0;
}

enum { ENCODED = 0, NO_MEMORY = -1, TOO_DEEP = -2, NOT_PLAIN = -3 };

/* The value at the top of the stack, appended to b->out (the sandbox's scalar and encode). */
static int encode(Bridge *b, lua_State *L, const char *nil, size_t nil_len, int depth) {
    size_t len;
    const char *text;
    switch (lua.type(L, -1)) {
    case LUA_TSTRING:
        text = lua.tolstring(L, -1, &len);
        if (out_header(b, '$', (long long)len) < 0 || out_put(b, text, len) < 0 ||
            out_put(b, "\r\n", 2) < 0)
            return NO_MEMORY;
        return ENCODED;
    case LUA_TNUMBER: {
        lua_Number n = lua.tonumber(L, -1);
        /* Truncated toward zero; NaN and out of range give what the C cast gives in Redis. */
        long long value = (n != n || n >= 9223372036854775808.0 || n < -9223372036854775808.0)
                              ? LLONG_MIN
                              : (long long)n;
        return out_header(b, ':', value) < 0 ? NO_MEMORY : ENCODED;
    }
    case LUA_TBOOLEAN:
        if (lua.toboolean(L, -1)) return out_put(b, ":1\r\n", 4) < 0 ? NO_MEMORY : ENCODED;
        return out_put(b, nil, nil_len) < 0 ? NO_MEMORY : ENCODED;
    case LUA_TTABLE:
        break;
    default:
        return out_put(b, nil, nil_len) < 0 ? NO_MEMORY : ENCODED;
    }
    if (depth >= b->max_depth) return TOO_DEEP;
    if (!lua.checkstack(L, 3)) return NO_MEMORY;
    static const struct {
        const char *field;
        char kind;
    } messages[] = {{"err", '-'}, {"ok", '+'}};
    for (int i = 0; i < 2; i++) {
        lua.pushlstring(L, messages[i].field, strlen(messages[i].field));
        lua.rawget(L, -2);
        if (lua.type(L, -1) == LUA_TSTRING) {
            text = lua.tolstring(L, -1, &len);
            int rc = out_line(b, messages[i].kind, text, len);
            lua.settop(L, -2);
            return rc < 0 ? NO_MEMORY : ENCODED;
        }
        lua.settop(L, -2);
    }
    /* A table without item 1 may be {double=}, {map=}, {set=}... (resp3.py): Lua's encoder
     * writes those (and the empty array). */
    lua.rawgeti(L, -1, 1);
    int empty = lua.type(L, -1) == LUA_TNIL;
    lua.settop(L, -2);
    if (empty) return NOT_PLAIN;
    /* An array of the items from 1 up to the first nil: its header once they are counted. */
    size_t header_at = b->out_len;
    char header[24];
    if (out_reserve(b, sizeof(header)) < 0) return NO_MEMORY;
    b->out_len += sizeof(header);
    int count = 0;
    for (;;) {
        lua.rawgeti(L, -1, count + 1);
        if (lua.type(L, -1) == LUA_TNIL) {
            lua.settop(L, -2);
            break;
        }
        int rc = encode(b, L, nil, nil_len, depth + 1);
        lua.settop(L, -2);
        if (rc != ENCODED) return rc;
        count++;
    }
    header[0] = '*';
    int header_len = 1 + put_int(header + 1, count);
    header[header_len++] = '\r';
    header[header_len++] = '\n';
    memmove(b->out + header_at + header_len, b->out + header_at + sizeof(header),
            b->out_len - header_at - sizeof(header));
    memcpy(b->out + header_at, header, (size_t)header_len);
    b->out_len -= sizeof(header) - (size_t)header_len;
    return ENCODED;
}

/* encode(value, nil_reply): the reply's bytes, nil when tables nest too deep, false when the
 * buffer could not grow or a table is not a plain array (the sandbox's Lua encoder then writes
 * the reply). */
static int l_encode(lua_State *L) {
    Bridge *b = bridge_of(L);
    size_t nil_len;
    const char *nil = lua.tolstring(L, 2, &nil_len);
    if (nil == NULL) nil = "$-1\r\n", nil_len = 5;
    /* The value on top, nil_reply kept below it: its text must outlive the encoding. */
    lua.settop(L, 2);
    lua.pushvalue(L, 1);
    b->out_len = 0;
    int rc = encode(b, L, nil, nil_len, 0);
    if (rc == TOO_DEEP) return 0;
    if (rc == NO_MEMORY || rc == NOT_PLAIN) { /* the sandbox encodes in Lua instead */
        lua.pushboolean(L, 0);
        return 1;
    }
    lua.pushlstring(L, b->out, b->out_len);
    return 1;
}

/* ---- installing ------------------------------------------------------------------------ */

#define REGISTRY_KEY "blinkstore_gunicorn.luacall"

/* The bridge's reference held by the Lua state: released when the state is closed. */
static int l_release(lua_State *L) {
    Bridge **slot = lua.touserdata(L, 1);
    if (slot != NULL && *slot != NULL) {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_CLEAR(*slot);
        PyGILState_Release(gil);
    }
    return 0;
}

typedef struct {
    Bridge *bridge;
    const char *token;
    size_t token_len;
    int found;
} Install;

/* Run under lua_cpcall (a failed allocation is an error code, not a longjmp out of Python):
 * check the token, then set the functions into the registry's table for the sandbox. */
static int install_protected(lua_State *L) {
    Install *ctx = lua.touserdata(L, 1);
    lua.getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
    if (lua.type(L, -1) != LUA_TTABLE) return 0;
    int slot = lua.gettop(L);
    lua.getfield(L, slot, "token");
    size_t len;
    const char *token = lua.type(L, -1) == LUA_TSTRING ? lua.tolstring(L, -1, &len) : NULL;
    if (token == NULL || len != ctx->token_len || memcmp(token, ctx->token, len) != 0) return 0;
    ctx->found = 1;
    Bridge **ud = lua.newuserdata(L, sizeof(Bridge *));
    *ud = NULL;
    int userdata = lua.gettop(L);
    lua.createtable(L, 0, 1);
    lua.pushcclosure(L, l_release, 0);
    lua.setfield(L, -2, "__gc");
    lua.setmetatable(L, userdata);
    Py_INCREF(ctx->bridge); /* the GIL is held: install() is called from Python */
    *ud = ctx->bridge;
    static const struct {
        const char *name;
        lua_CFunction fn;
        int raise; /* -1: no upvalue but the bridge */
    } functions[] = {{"call", l_call, 1}, {"pcall", l_call, 0}, {"encode", l_encode, -1}};
    for (int i = 0; i < 3; i++) {
        lua.pushvalue(L, userdata);
        if (functions[i].raise >= 0) {
            lua.pushboolean(L, functions[i].raise);
            lua.getfield(L, slot, "resp3"); /* the sandbox's reader of RESP3 replies */
        }
        lua.pushcclosure(L, functions[i].fn, functions[i].raise >= 0 ? 3 : 1);
        lua.setfield(L, slot, functions[i].name);
    }
    return 0;
}

static PyObject *bridge_install(Bridge *b, PyObject *args) {
    unsigned long long address;
    const char *token;
    Py_ssize_t token_len;
    if (!PyArg_ParseTuple(args, "Ky#i", &address, &token, &token_len, &b->max_depth)) return NULL;
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "load() the Lua API first");
        return NULL;
    }
    lua_State *L = (lua_State *)(uintptr_t)address;
    Install ctx = {b, token, (size_t)token_len, 0};
    /* A coroutine made and never resumed: status 0, its function alone on its stack. */
    if (L == NULL || lua.status(L) != 0 || lua.gettop(L) != 1) {
        PyErr_SetString(PyExc_ValueError, "not a fresh coroutine's state");
        return NULL;
    }
    int rc = lua.cpcall(L, install_protected, &ctx);
    lua.settop(L, 1);
    if (rc != 0) {
        PyErr_SetString(PyExc_MemoryError, "installing the Lua bridge failed");
        return NULL;
    }
    if (!ctx.found) {
        PyErr_SetString(PyExc_ValueError, "the state's registry does not hold the token");
        return NULL;
    }
    Py_RETURN_NONE;
}

static int bridge_init(Bridge *b, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"execute", "runner", "fast", "state", "dispatcher", "client", NULL};
    PyObject *execute, *runner, *fast, *state, *dispatcher, *client;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!OOO", names, &execute, &runner,
                                     &PyDict_Type, &fast, &state, &dispatcher, &client))
        return -1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(fast, &pos, &key, &value)) {
        if (!PyBytes_CheckExact(key) || !PyTuple_CheckExact(value) || PyTuple_GET_SIZE(value) != 2 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(value, 0))) {
            PyErr_SetString(PyExc_TypeError, "fast: bytes -> (arity, writes)");
            return -1;
        }
    }
    Py_XSETREF(b->execute, Py_NewRef(execute));
    Py_XSETREF(b->runner, Py_NewRef(runner));
    Py_XSETREF(b->fast, Py_NewRef(fast));
    Py_XSETREF(b->state, Py_NewRef(state));
    Py_XSETREF(b->dispatcher, Py_NewRef(dispatcher));
    Py_XSETREF(b->client, Py_NewRef(client));
    b->max_depth = 128;
    return 0;
}

static int bridge_traverse(Bridge *b, visitproc visit, void *arg) {
    Py_VISIT(b->execute);
    Py_VISIT(b->runner);
    Py_VISIT(b->fast);
    Py_VISIT(b->state);
    Py_VISIT(b->dispatcher);
    Py_VISIT(b->client);
    return 0;
}

static int bridge_clear(Bridge *b) {
    Py_CLEAR(b->execute);
    Py_CLEAR(b->runner);
    Py_CLEAR(b->fast);
    Py_CLEAR(b->state);
    Py_CLEAR(b->dispatcher);
    Py_CLEAR(b->client);
    return 0;
}

static void bridge_dealloc(Bridge *b) {
    PyObject_GC_UnTrack(b);
    bridge_clear(b);
    PyMem_RawFree(b->reply);
    PyMem_RawFree(b->out);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static PyMethodDef bridge_methods[] = {
    {"install", (PyCFunction)bridge_install, METH_VARARGS,
     "install(address, token, max_depth): set call, pcall and encode into the registry table "
     "holding token, through the never-resumed coroutine whose lua_State is at address."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BridgeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "blinkstore_gunicorn.server.scripting._luacall.Bridge",
    .tp_basicsize = sizeof(Bridge),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Bridge(execute, runner, fast, state, dispatcher, client): see install.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)bridge_init,
    .tp_dealloc = (destructor)bridge_dealloc,
    .tp_traverse = (traverseproc)bridge_traverse,
    .tp_clear = (inquiry)bridge_clear,
    .tp_methods = bridge_methods,
};

/* load(path): take the Lua API from lupa's already loaded module at path. */
static PyObject *load(PyObject *module, PyObject *arg) {
    if (loaded) Py_RETURN_NONE;
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes)) return NULL;
    void *handle = dlopen(PyBytes_AS_STRING(bytes), RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(bytes);
    if (handle == NULL) {
        PyErr_Format(PyExc_ImportError, "the Lua module is not loaded: %s", dlerror());
        return NULL;
    }
    struct {
        void **slot;
        const char *name;
    } symbols[] = {
        {(void **)&lua.gettop, "lua_gettop"},           {(void **)&lua.settop, "lua_settop"},
        {(void **)&lua.type, "lua_type"},               {(void **)&lua.tolstring, "lua_tolstring"},
        {(void **)&lua.tonumber, "lua_tonumber"},       {(void **)&lua.toboolean, "lua_toboolean"},
        {(void **)&lua.touserdata, "lua_touserdata"},   {(void **)&lua.pushlstring, "lua_pushlstring"},
        {(void **)&lua.pushnumber, "lua_pushnumber"},   {(void **)&lua.pushboolean, "lua_pushboolean"},
        {(void **)&lua.pushvalue, "lua_pushvalue"},     {(void **)&lua.pushcclosure, "lua_pushcclosure"},
        {(void **)&lua.createtable, "lua_createtable"}, {(void **)&lua.getfield, "lua_getfield"},
        {(void **)&lua.setfield, "lua_setfield"},       {(void **)&lua.rawget, "lua_rawget"},
        {(void **)&lua.rawgeti, "lua_rawgeti"},         {(void **)&lua.rawseti, "lua_rawseti"},
        {(void **)&lua.setmetatable, "lua_setmetatable"}, {(void **)&lua.newuserdata, "lua_newuserdata"},
        {(void **)&lua.checkstack, "lua_checkstack"},   {(void **)&lua.error, "lua_error"},
        {(void **)&lua.status, "lua_status"},           {(void **)&lua.cpcall, "lua_cpcall"},
        {(void **)&lua.call, "lua_call"},
    };
    for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        *symbols[i].slot = dlsym(handle, symbols[i].name);
        if (*symbols[i].slot == NULL) {
            PyErr_Format(PyExc_ImportError, "the Lua module lacks %s", symbols[i].name);
            return NULL; /* loaded stays 0: install refuses */
        }
    }
    loaded = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"load", load, METH_O, "load(path): take the Lua 5.1 C API from lupa's loaded module at path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef luacall_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "blinkstore_gunicorn.server.scripting._luacall",
    .m_doc = "redis.call, redis.pcall and the reply encoding in C (see scripting/bridge.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__luacall(void) {
    s_read_only = PyUnicode_InternFromString("_read_only");
    s_run = PyUnicode_InternFromString("_run");
    s_wrote = PyUnicode_InternFromString("wrote");
    if (s_read_only == NULL || s_run == NULL || s_wrote == NULL || PyType_Ready(&BridgeType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&luacall_module);
    if (module == NULL) return NULL;
    Py_INCREF(&BridgeType);
    if (PyModule_AddObject(module, "Bridge", (PyObject *)&BridgeType) < 0) {
        Py_DECREF(&BridgeType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
