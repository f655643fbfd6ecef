/* Requests split from a read in C, where the read is canonical RESP (optional; see
 * protocol/resp_split.py).
 *
 * split(data, max_bulk, max_request, max_args) walks ``data`` from its first byte and takes
 * requests while each is, byte for byte, ``*<n>\r\n`` then n times ``$<len>\r\n<len bytes>\r\n``
 * with every number canonical (``0`` or a digit 1-9 then at most 17 more digits: no sign, no
 * leading zero, no space), n >= 1, and every size strictly below the caller's limits: n below
 * max_args, each len below max_bulk, the request up to its last argument below max_request.
 * It stops at the first byte that is anything else, or where a request does not end within
 * ``data``, and returns ``(requests, consumed)``: the argument lists taken, and how many bytes
 * they were. What follows is the pure-Python CommandReader's, from a request's first byte.
 * one(max_bulk, max_request, max_args, data) is the same test for a read that must be exactly
 * one request: its argument list, or None.
 *
 * So a request is taken only where CommandReader would read the same arguments and neither
 * refuse it nor fail: the same numbers (int() of canonical digits), the CRLF after every bulk
 * checked, no limit reached. Every other case (an empty or null array, another RESP type, a
 * nested array, a missing terminator, a huge count, a size at a limit, a partial request) is
 * left to the reference, unchanged, which answers it as it would any read.
 *
 * Nothing is allocated from a header alone: an array announcing more arguments than the rest of
 * ``data`` can hold (each takes at least 6 bytes, ``$0\r\n\r\n``) is not complete here, so a
 * 12-byte ``*268435456\r\n`` costs a comparison, and a request's list has at most len(data) / 6
 * slots. Arguments are new bytes objects, as CommandReader's slices are.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Digits a number may have here: 18 always fit in a long long. A longer one is over every limit
 * and left to the reference. */
#define MAX_DIGITS 18
/* The shortest argument on the wire: "$0\r\n\r\n". */
#define MIN_ARGUMENT 6

/* The canonical number of the header whose first digit is at ``p``, followed by CRLF; sets
 * ``*next`` past the CRLF. -1 for anything else (including a header that ends with ``data``). */
static long long header_number(const char *p, const char *end, const char **next) {
    long long value = 0;
    const char *digits = p;
    if (p < end && *p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9' && p - digits < MAX_DIGITS) {
            value = value * 10 + (*p - '0');
            p++;
        }
        if (p == digits) return -1;
    }
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return -1;
    *next = p + 2;
    return value;
}

/* One request starting at ``pos`` (its '*' already checked), as a new list with ``*next`` past
 * it; NULL without an error when it is not canonical, complete and within the limits; NULL with
 * an error when memory ran out. */
static PyObject *request_at(const char *pos, const char *end, long long max_bulk,
                            long long max_request, long long max_args, const char **next) {
    const char *cursor;
    long long count = header_number(pos + 1, end, &cursor);
    if (count < 1 || count >= max_args || count > (end - cursor) / MIN_ARGUMENT) return NULL;
    PyObject *args = PyList_New((Py_ssize_t)count);
    if (args == NULL) return NULL;
    for (Py_ssize_t index = 0; index < count; index++) {
        const char *start;
        if (cursor >= end || *cursor != '$') goto not_taken;
        long long length = header_number(cursor + 1, end, &start);
        if (length < 0 || length >= max_bulk || length > end - start - 2) goto not_taken;
        /* CommandReader measures a request from its '*' to the end of its last value. */
        if (start - pos + length >= max_request) goto not_taken;
        if (start[length] != '\r' || start[length + 1] != '\n') goto not_taken;
        PyObject *arg = PyBytes_FromStringAndSize(start, (Py_ssize_t)length);
        if (arg == NULL) goto not_taken; /* the caller sees the error set */
        PyList_SET_ITEM(args, index, arg);
        cursor = start + length + 2;
    }
    *next = cursor;
    return args;
not_taken:
    Py_DECREF(args);
    return NULL;
}

/* The three limits at ``argv[0..2]`` as long longs; 0 with an error set when one is not an int. */
static int read_limits(PyObject *const *argv, long long limits[3]) {
    for (int i = 0; i < 3; i++) {
        limits[i] = PyLong_AsLongLong(argv[i]);
        if (limits[i] == -1 && PyErr_Occurred()) return 0;
    }
    return 1;
}

static PyObject *split(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 4 || !PyBytes_Check(argv[0])) {
        PyErr_SetString(PyExc_TypeError, "split(data: bytes, max_bulk, max_request, max_args)");
        return NULL;
    }
    long long limits[3];
    if (!read_limits(argv + 1, limits)) return NULL;
    const char *base = PyBytes_AS_STRING(argv[0]);
    const char *end = base + PyBytes_GET_SIZE(argv[0]);
    const char *pos = base;
    PyObject *requests = PyList_New(0);
    if (requests == NULL) return NULL;
    while (pos < end && *pos == '*') {
        const char *next;
        PyObject *args = request_at(pos, end, limits[0], limits[1], limits[2], &next);
        if (args == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(requests);
                return NULL;
            }
            break;
        }
        int appended = PyList_Append(requests, args);
        Py_DECREF(args);
        if (appended < 0) {
            Py_DECREF(requests);
            return NULL;
        }
        pos = next;
    }
    return Py_BuildValue("(Nn)", requests, (Py_ssize_t)(pos - base));
}

/* one(max_bulk, max_request, max_args, data): the argument list of ``data`` when it is exactly
 * one request that split() would take, else None. For a read that is usually one whole request
 * (a connection's request/response path), without split()'s tuple and outer list; the limits
 * come first so that functools.partial can bind them once per connection. */
static PyObject *one(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 4 || !PyBytes_Check(argv[3])) {
        PyErr_SetString(PyExc_TypeError, "one(max_bulk, max_request, max_args, data: bytes)");
        return NULL;
    }
    long long limits[3];
    if (!read_limits(argv, limits)) return NULL;
    const char *base = PyBytes_AS_STRING(argv[3]);
    const char *end = base + PyBytes_GET_SIZE(argv[3]);
    const char *next;
    if (base == end || *base != '*') Py_RETURN_NONE;
    PyObject *args = request_at(base, end, limits[0], limits[1], limits[2], &next);
    if (args == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    if (next != end) {
        Py_DECREF(args);
        Py_RETURN_NONE;
    }
    return args;
}

static PyMethodDef split_methods[] = {
    {"split", (PyCFunction)(void (*)(void))split, METH_FASTCALL,
     "split(data, max_bulk, max_request, max_args) -> (requests, consumed): the canonical "
     "requests at the start of data, each size strictly below its limit."},
    {"one", (PyCFunction)(void (*)(void))one, METH_FASTCALL,
     "one(max_bulk, max_request, max_args, data) -> list | None: the arguments of data when it "
     "is exactly one request split() would take."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef split_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "blinkstore_gunicorn.protocol._split",
    .m_doc = "Canonical RESP requests split from a read in C (see protocol/resp_split.py).",
    .m_size = -1,
    .m_methods = split_methods,
};

PyMODINIT_FUNC PyInit__split(void) { return PyModule_Create(&split_module); }
