/* What server/_fastcmd.c shares with server/_fasttypes.c, its data-type commands: the slot
 * helpers, the reply encoders, the integer parser, and the entry points of _fasttypes.c. Both
 * files are compiled into the one _fastcmd extension (setup.py). */
#ifndef BLINKSTORE_FASTCMD_H
#define BLINKSTORE_FASTCMD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The slot's value (borrowed; NULL when unset: the Python path then raises). */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* The offset of the writable object slot ``name`` of ``type``, or -1 with an error set. */
Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name);
/* The Py_ssize_t in a slot holding an exact int: 0, or -1 (no error set) when it is not one. */
int slot_size(PyObject *obj, Py_ssize_t offset, Py_ssize_t *out);
/* 1 when key is in dict, 0 when not, -1 on error. */
int holds(PyObject *dict, PyObject *key);
/* obj.<offset> += n, on the object's Python int. */
int add_count(PyObject *obj, Py_ssize_t offset, Py_ssize_t n);
/* replies.parse_int; 0 when the text is not such an integer. */
int parse_int(PyObject *raw, long long *out);
/* The decimal digits of n >= 0. */
Py_ssize_t digits(Py_ssize_t n);
/* "<kind><n>\r\n" at p; returns the end. */
char *put_header(char *p, char kind, Py_ssize_t n);

/* The data-type commands of _fasttypes.c: their state, made from Runner's ``typed`` argument. */
typedef struct Typed Typed;
Typed *typed_new(PyObject *dispatcher, PyObject *engine, PyObject *spec);
void typed_free(Typed *t);
int typed_traverse(Typed *t, visitproc visit, void *arg);
/* Which of its commands ``handler`` is (an index), or -1. */
int typed_which(Typed *t, PyObject *handler);
/* The reply of a plain request of command ``which``, or NULL (an error set, or none: hand
 * over, before any side effect). ``nil``: the client's nil reply (borrowed, may be NULL). */
PyObject *typed_answer(Typed *t, PyObject *nil, PyObject *args, int which);

#endif
