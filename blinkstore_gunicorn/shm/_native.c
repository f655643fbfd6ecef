/*
 * The shared region's hot paths in C: a reader's lookup, and the writer's slot and block
 * writes, allocator and table migration, with the common SET in one call. Optional:
 * blinkstore_gunicorn/shm/reader.py, publisher.py, blocks.py, migration.py and writer.py are
 * the reference, and everything here computes exactly what they compute
 * (tests/unit/test_shm_native.py and test_shm_writers.py check it).
 *
 * What C adds besides speed is memory order. The layout is a seqlock per slot (layout.py):
 *   writer: seq = odd (relaxed); release fence; words and bytes; seq = even (release store)
 *   reader: seq (acquire load); words and bytes; acquire fence; seq and token again
 * so on a weakly ordered CPU (ARM, POWER) a reader that sees the even sequence twice also
 * sees every byte written before it. Pure Python has no barriers; there the checksum
 * (layout.checksum_by_default) covers the same risk.
 *
 * Every 8-byte word shared with another process is read and written with __atomic builtins
 * (aligned 8-byte accesses, as in the Python paths); value and key bytes are copied with
 * memcpy and validated by the sequence check afterwards, as a seqlock does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>
#include <sys/mman.h>
#include <time.h>

/* Mirrors of layout.py (checked against it by the tests through constants()). */
#define H_TOKEN 2
#define H_HEARTBEAT 7
#define H_WRITE_EPOCH 13
#define META 0
#define SEQ 1
#define LOC 2
#define EXPIRE 3
#define SLOT_WORDS 4
#define BLOCK_LENGTHS 0
#define BLOCK_SLOT 1
#define BLOCK_CHECKSUM 2
#define BLOCK_HEADER 24
#define LOC_SHIFT 24
#define LOC_LEN_MASK 0xFFFFFFu
#define MAX_PROBE 32
#define HASH_MIX 0x9E3779B97F4A7C15ull
#define STALE_NS 500000000LL
#define SPINS 64 /* reader.py's _SPINS */
#define COUNTER_BYTES (1024 * 8 * 8)

static inline uint64_t load_relaxed(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t load_acquire(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_relaxed(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void store_release(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static int64_t clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* reader.py's `monotonic_ns() - w[H_HEARTBEAT] > STALE_NS`, for any heartbeat word (a
 * difference of Python ints: no signed overflow here either). */
static inline int heartbeat_stale(const uint64_t *w) {
    uint64_t now = (uint64_t)clock_ns(CLOCK_MONOTONIC), beat = load_acquire(&w[H_HEARTBEAT]);
    return now > beat && now - beat > (uint64_t)STALE_NS;
}

/* reader.py's `expire_at and expire_at <= time_ns() // 1_000_000`, for any deadline word. */
static inline int expired(uint64_t expire_at) {
    int64_t now_ms = clock_ns(CLOCK_REALTIME) / 1000000;
    return expire_at && now_ms >= 0 && expire_at <= (uint64_t)now_ms;
}

/* -- layout.key_hash: r = int.from_bytes(key, "little") * mul % prime, then
 *    (r ^ r >> 31) * HASH_MIX, bits 32-63 ----------------------------------------------- */

static uint64_t key_hash(const unsigned char *key, Py_ssize_t n, uint64_t mul, uint64_t prime) {
    /* Horner over 8-byte little-endian words from the most significant end; every partial
     * remainder is below prime < 2**64, so r * 2**64 + word and r * mul fit in 128 bits, for
     * any prime and multiplier a header word can hold (layout.py draws p < 2**62). */
    Py_ssize_t words = n / 8, rest = n % 8;
    uint64_t top = 0;
    memcpy(&top, key + words * 8, (size_t)rest); /* little-endian CPUs only (setup.py) */
    unsigned __int128 r = top % prime;
    for (Py_ssize_t k = words - 1; k >= 0; k--) {
        uint64_t word;
        memcpy(&word, key + k * 8, 8);
        r = ((r << 64) | word) % prime;
    }
    uint64_t res = (uint64_t)(r * mul % prime);
    /* layout.py's product is of Python ints; its bits 32-63 are those of the product mod 2**64 */
    return (res ^ res >> 31) * HASH_MIX >> 32;
}

/* -- zlib.crc32 (IEEE, reflected) and layout.entry_checksum ------------------------------- */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) { /* slicing by 8 */
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= crc;
        crc = crc_table[7][a & 0xFF] ^ crc_table[6][(a >> 8) & 0xFF] ^
              crc_table[5][(a >> 16) & 0xFF] ^ crc_table[4][a >> 24] ^
              crc_table[3][b & 0xFF] ^ crc_table[2][(b >> 8) & 0xFF] ^
              crc_table[1][(b >> 16) & 0xFF] ^ crc_table[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint64_t entry_checksum(const void *key, size_t nk, const void *value, size_t nv,
                               uint64_t expire_at) {
    uint32_t c = crc32_update(0, key, nk);
    c = crc32_update(c, value, nv);
    return crc32_update(c, (const unsigned char *)&expire_at, 8);
}

/* -- argument helpers -------------------------------------------------------------------- */

static int as_u64(PyObject *o, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int want_bytes(PyObject *o, const char *what) {
    if (PyBytes_Check(o)) return 0;
    PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* ========================================================================================= */
/* Lookup: one reader's view (reader.RegionReader owns it)                                   */
/* ========================================================================================= */

typedef struct {
    PyObject_HEAD
    Py_buffer region; /* read-only mapping */
    Py_buffer marks;  /* writable: counters, then the marks halves */
    int open;
    int checksum;
    uint64_t mul, prime;
    uint64_t *hits, *misses;
    /* the adopted table (set_table); table == NULL until the first */
    uint64_t *table;
    uint64_t token, word_mask, slot_mask;
    unsigned char *table_marks;
    PyObject *on_stale; /* on_stale(key, mode): adopt the live table and read again */
    PyObject *fallback; /* reader.FALLBACK */
    PyObject *miss;     /* what a miss answers: None, or FALLBACK for a partial table */
} Lookup;

static int lookup_traverse(Lookup *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_stale);
    Py_VISIT(self->fallback);
    Py_VISIT(self->miss);
    return 0;
}

static void lookup_release(Lookup *self) {
    if (self->open) {
        self->open = 0;
        self->table = NULL;
        PyBuffer_Release(&self->region);
        PyBuffer_Release(&self->marks);
    }
}

static int lookup_clear(Lookup *self) {
    lookup_release(self);
    Py_CLEAR(self->on_stale);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->miss);
    return 0;
}

static void lookup_dealloc(Lookup *self) {
    PyObject_GC_UnTrack(self);
    lookup_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int lookup_init(Lookup *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"region", "marks", "counter", "checksum", "mul", "prime",
                             "on_stale", "fallback", "miss", NULL};
    PyObject *region, *marks, *on_stale, *fallback, *miss;
    Py_ssize_t counter;
    int checksum;
    unsigned long long mul, prime;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnpKKOOO", kwlist, &region, &marks, &counter,
                                     &checksum, &mul, &prime, &on_stale, &fallback, &miss))
        return -1;
    if (self->open) {
        PyErr_SetString(PyExc_RuntimeError, "Lookup is already initialised");
        return -1;
    }
    if (!prime || counter < 0 || counter >= 1024) {
        PyErr_SetString(PyExc_ValueError, "bad hash secret or counter slot");
        return -1;
    }
    if (PyObject_GetBuffer(region, &self->region, PyBUF_SIMPLE) < 0) return -1;
    if (PyObject_GetBuffer(marks, &self->marks, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&self->region);
        return -1;
    }
    if (self->marks.len < COUNTER_BYTES || self->region.len < 4096 ||
        ((uintptr_t)self->region.buf | (uintptr_t)self->marks.buf) & 7) {
        PyBuffer_Release(&self->region);
        PyBuffer_Release(&self->marks);
        PyErr_SetString(PyExc_ValueError, "not a region and its marks");
        return -1;
    }
    self->open = 1;
    self->checksum = checksum;
    self->mul = mul;
    self->prime = prime;
    self->hits = (uint64_t *)self->marks.buf + counter * 8;
    self->misses = self->hits + 1;
    self->table = NULL;
    Py_INCREF(on_stale);
    Py_XSETREF(self->on_stale, on_stale);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_INCREF(miss);
    Py_XSETREF(self->miss, miss);
    return 0;
}

static PyObject *lookup_set_table(Lookup *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t offset, slots, token, marks_at;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "set_table(offset, slots, token, marks_offset)");
        return NULL;
    }
    if (as_u64(args[0], &offset) || as_u64(args[1], &slots) || as_u64(args[2], &token) ||
        as_u64(args[3], &marks_at))
        return NULL;
    /* reader._refresh validated these against the header; this guards the C view itself */
    if (!self->open || !slots || slots & (slots - 1) || offset & 7 ||
        offset > (uint64_t)self->region.len ||
        slots > ((uint64_t)self->region.len - offset) / (SLOT_WORDS * 8) ||
        marks_at > (uint64_t)self->marks.len || slots > (uint64_t)self->marks.len - marks_at) {
        PyErr_SetString(PyExc_ValueError, "table outside the mappings");
        return NULL;
    }
    self->table = (uint64_t *)((char *)self->region.buf + offset);
    self->token = token;
    self->slot_mask = slots - 1;
    self->word_mask = slots * SLOT_WORDS - 1;
    self->table_marks = (unsigned char *)self->marks.buf + marks_at;
    Py_RETURN_NONE;
}

static PyObject *lookup_stale(Lookup *self, PyObject *key, long mode) {
    PyObject *m = PyLong_FromLong(mode);
    if (!m) return NULL;
    PyObject *result = PyObject_CallFunctionObjArgs(self->on_stale, key, m, NULL);
    Py_DECREF(m);
    return result;
}

/* reader.RegionReader.get, step for step (see there for the why of each check). */
static PyObject *lookup_get(Lookup *self, PyObject *const *args, Py_ssize_t nargs) {
    long mode = 0;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, mode=0)");
        return NULL;
    }
    PyObject *key = args[0];
    if (want_bytes(key, "key")) return NULL;
    if (nargs == 2) {
        mode = PyLong_AsLong(args[1]);
        if (mode == -1 && PyErr_Occurred()) return NULL;
    }
    if (!self->open) {
        PyErr_SetString(PyExc_ValueError, "the region is closed");
        return NULL;
    }
    if (!self->table) return lookup_stale(self, key, mode);
    const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(key);
    Py_ssize_t nk = PyBytes_GET_SIZE(key);
    const char *base = self->region.buf;
    uint64_t size = (uint64_t)self->region.len;
    uint64_t *w = (uint64_t *)self->region.buf;
    uint64_t *t = self->table, token = self->token, word_mask = self->word_mask;
    uint64_t h = key_hash(k, nk, self->mul, self->prime);
    uint64_t want = (h << 32) + (uint64_t)nk;
    uint64_t i = (h & self->slot_mask) << 2;
    int probes = 0, spins = 0;
    for (;;) {
        uint64_t meta = load_relaxed(&t[i]);
        if (meta == want) {
            uint64_t seq = load_acquire(&t[i + SEQ]);
            uint64_t loc = load_relaxed(&t[i + LOC]);
            uint64_t expire_at = load_relaxed(&t[i + EXPIRE]);
            uint64_t start = (loc >> LOC_SHIFT) + BLOCK_HEADER, nv = loc & LOC_LEN_MASK;
            /* a value a torn read made up may point anywhere: only inside the mapping */
            int same = loc && start <= size && (uint64_t)nk <= size - start &&
                       nv <= size - start - (uint64_t)nk &&
                       memcmp(base + start, k, (size_t)nk) == 0;
            PyObject *value = NULL;
            if (same) {
                value = PyBytes_FromStringAndSize(base + start + nk, (Py_ssize_t)nv);
                if (!value) return NULL;
            }
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            uint64_t now_token = load_relaxed(&w[H_TOKEN]);
            if (seq & 1 || load_relaxed(&t[i + SEQ]) != seq || now_token != token) {
                Py_XDECREF(value);
                if (now_token != token) return lookup_stale(self, key, mode);
                if (++spins > SPINS) return Py_NewRef(self->fallback);
                continue;
            }
            if (heartbeat_stale(w)) {
                Py_XDECREF(value);
                return lookup_stale(self, key, mode);
            }
            if (!loc) return Py_NewRef(self->fallback); /* "ask the store" */
            if (same) {
                if (self->checksum) {
                    uint64_t at = (loc >> (LOC_SHIFT + 3)) + BLOCK_CHECKSUM;
                    if (at >= size / 8 ||
                        load_acquire(&w[at]) != entry_checksum(k, (size_t)nk,
                                                               PyBytes_AS_STRING(value),
                                                               (size_t)nv, expire_at)) {
                        Py_DECREF(value);
                        return Py_NewRef(self->fallback);
                    }
                }
                if (expired(expire_at)) {
                    Py_DECREF(value);
                    break;
                }
                if (mode) {
                    if (mode == 2) {
                        Py_DECREF(value);
                        return PyLong_FromUnsignedLongLong(expire_at);
                    }
                    return value;
                }
                unsigned char *mark = &self->table_marks[i >> 2];
                if (!__atomic_load_n(mark, __ATOMIC_RELAXED))
                    __atomic_store_n(mark, 1, __ATOMIC_RELAXED);
                /* not an atomic add: the slot is this process's (reader.py wraps the same) */
                store_relaxed(self->hits, load_relaxed(self->hits) + 1);
                return value;
            }
        } else if (!meta) {
            if (load_relaxed(&w[H_TOKEN]) != token || heartbeat_stale(w))
                return lookup_stale(self, key, mode);
            break;
        }
        if (++probes >= MAX_PROBE) {
            if (load_relaxed(&w[H_TOKEN]) != token) return lookup_stale(self, key, mode);
            return Py_NewRef(self->fallback);
        }
        i = (i + SLOT_WORDS) & word_mask;
    }
    if (!mode) store_relaxed(self->misses, load_relaxed(self->misses) + 1);
    return Py_NewRef(self->miss);
}

static PyObject *lookup_close(Lookup *self, PyObject *unused) {
    lookup_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef lookup_methods[] = {
    {"get", (PyCFunction)(void (*)(void))lookup_get, METH_FASTCALL,
     "get(key, mode=0): reader.RegionReader.get in C."},
    {"set_table", (PyCFunction)(void (*)(void))lookup_set_table, METH_FASTCALL,
     "set_table(offset, slots, token, marks_offset): adopt a table reader._refresh checked."},
    {"close", (PyCFunction)lookup_close, METH_NOARGS, "Release the mappings."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LookupType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "blinkstore_gunicorn.shm._native.Lookup",
    .tp_doc = "A reader's lookups in C over the region and marks mappings.",
    .tp_basicsize = sizeof(Lookup),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)lookup_init,
    .tp_dealloc = (destructor)lookup_dealloc,
    .tp_traverse = (traverseproc)lookup_traverse,
    .tp_clear = (inquiry)lookup_clear,
    .tp_methods = lookup_methods,
};

/* ========================================================================================= */
/* Blocks: blocks.Blocks in C, choice for choice (the same block for the same calls)          */
/* ========================================================================================= */

/* One class per block size (layout.block_size): 16..256 in 16-byte steps, then 16 per
 * doubling up to the largest page (blocks.MAX_PAGE = 256 KiB). */
#define SIZE_CLASSES 200
#define MAX_PAGE_BYTES (256 * 1024)

static int size_class(uint64_t size) {
    if (size <= 256) return (int)(size >> 4);
    int bits = 64 - __builtin_clzll(size);
    return 17 + (bits - 9) * 16 + (int)(size >> (bits - 5)) - 16;
}

typedef struct {
    uint64_t next;     /* first block never handed out (byte offset in the region) */
    uint32_t live;     /* blocks in use; 0: the page is in the pool or untouched */
    uint32_t size;     /* its block size */
    uint32_t *free;    /* freed blocks (offsets in the page), a stack */
    uint32_t nfree, cap;
    int64_t prev, after; /* its place in its size's list of pages with room (Python's dict) */
    int listed;
} Page;

typedef struct {
    PyObject_HEAD
    Py_buffer region;
    int open;
    int returns_pages;
    uint64_t start, end, page, shift;
    uint64_t pages; /* pages ever handed out */
    Page *pg;       /* pages[0 .. pages) */
    uint64_t *pool; /* pages handed back, a stack */
    uint64_t npool;
    int64_t head[SIZE_CLASSES], tail[SIZE_CLASSES];
} Blocks;

static void blocks_reset(Blocks *self) {
    for (uint64_t i = 0; i < self->pages; i++) PyMem_Free(self->pg[i].free);
    PyMem_Free(self->pg);
    PyMem_Free(self->pool);
    self->pg = NULL;
    self->pool = NULL;
    self->pages = self->npool = 0;
    for (int c = 0; c < SIZE_CLASSES; c++) self->head[c] = self->tail[c] = -1;
}

static void blocks_dealloc(Blocks *self) {
    blocks_reset(self);
    if (self->open) PyBuffer_Release(&self->region);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int blocks_init(Blocks *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"region", "start", "end", "page", NULL};
    PyObject *region;
    unsigned long long start, end, page;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OKKK", kwlist, &region, &start, &end, &page))
        return -1;
    if (self->open) {
        PyErr_SetString(PyExc_RuntimeError, "Blocks is already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(region, &self->region, PyBUF_WRITABLE) < 0) return -1;
    if (!page || page & (page - 1) || page > MAX_PAGE_BYTES ||
        start > end || end > (uint64_t)self->region.len) {
        PyBuffer_Release(&self->region);
        PyErr_SetString(PyExc_ValueError, "bad data area or page size");
        return -1;
    }
    self->open = 1;
    self->returns_pages = 1;
    self->start = start;
    self->end = end;
    self->page = page;
    self->shift = (uint64_t)__builtin_ctzll(page);
    self->pg = NULL;
    self->pool = NULL;
    self->pages = self->npool = 0;
    for (int c = 0; c < SIZE_CLASSES; c++) self->head[c] = self->tail[c] = -1;
    return 0;
}

static void list_append(Blocks *self, int c, int64_t page) {
    Page *p = &self->pg[page];
    p->listed = 1;
    p->prev = self->tail[c];
    p->after = -1;
    if (self->tail[c] >= 0) self->pg[self->tail[c]].after = page;
    else self->head[c] = page;
    self->tail[c] = page;
}

static void list_remove(Blocks *self, int c, int64_t page) {
    Page *p = &self->pg[page];
    if (!p->listed) return;
    p->listed = 0;
    if (p->prev >= 0) self->pg[p->prev].after = p->after;
    else self->head[c] = p->after;
    if (p->after >= 0) self->pg[p->after].prev = p->prev;
    else self->tail[c] = p->prev;
}

/* Blocks.alloc: 0 when no page can give one, -1 on a memory error (exception set). */
static int64_t blocks_take(Blocks *self, uint64_t size) {
    if (!size || size > self->page) return 0;
    int c = size_class(size);
    int64_t page = self->head[c];
    uint64_t block;
    if (page >= 0) {
        Page *p = &self->pg[page];
        uint64_t page_end = self->start + ((uint64_t)page + 1) * self->page;
        if (p->nfree) block = self->start + ((uint64_t)page << self->shift) + p->free[--p->nfree];
        else {
            block = p->next;
            p->next = block + size;
        }
        if (!p->nfree && p->next + size > page_end) list_remove(self, c, page);
        p->live++;
        return (int64_t)block;
    }
    if (self->npool) page = (int64_t)self->pool[--self->npool];
    else if (self->start + (self->pages + 1) * self->page <= self->end) {
        Page *grown = PyMem_Realloc(self->pg, (self->pages + 1) * sizeof(Page));
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        self->pg = grown;
        memset(&grown[self->pages], 0, sizeof(Page));
        page = (int64_t)self->pages++;
    } else
        return 0;
    Page *p = &self->pg[page];
    block = self->start + ((uint64_t)page << self->shift);
    p->live = 1;
    p->size = (uint32_t)size;
    p->next = block + size;
    p->nfree = 0;
    if (block + 2 * size <= block + self->page) list_append(self, c, page);
    return (int64_t)block;
}

/* Blocks.free: the block's size, or 0 (exception set) for a block not handed out. */
static uint64_t blocks_give(Blocks *self, uint64_t block) {
    uint64_t page = block >= self->start ? (block - self->start) >> self->shift : UINT64_MAX;
    Page *p = page < self->pages ? &self->pg[page] : NULL;
    uint64_t at = p ? block - self->start - (page << self->shift) : 0;
    if (!p || !p->live || at % p->size || block >= p->next) {
        PyErr_SetString(PyExc_KeyError, "not an allocated block");
        return 0;
    }
    uint64_t size = p->size;
    int c = size_class(size);
    if (--p->live) {
        if (p->nfree == p->cap) {
            uint32_t cap = p->cap ? 2 * p->cap : 8;
            uint32_t *grown = PyMem_Realloc(p->free, cap * sizeof(uint32_t));
            if (!grown) {
                p->live++;
                PyErr_NoMemory();
                return 0;
            }
            p->free = grown;
            p->cap = cap;
        }
        if (!p->listed) list_append(self, c, (int64_t)page);
        p->free[p->nfree++] = (uint32_t)at;
        return size;
    }
    uint64_t *grown = PyMem_Realloc(self->pool, (self->npool + 1) * sizeof(uint64_t));
    if (!grown) {
        p->live++;
        PyErr_NoMemory();
        return 0;
    }
    self->pool = grown;
    list_remove(self, c, (int64_t)page);
    p->nfree = 0;
    p->size = 0;
    if (self->returns_pages)
        madvise((char *)self->region.buf + self->start + (page << self->shift), self->page,
                MADV_REMOVE);
    self->pool[self->npool++] = page;
    return size;
}

static PyObject *blocks_alloc(Blocks *self, PyObject *arg) {
    uint64_t size;
    if (as_u64(arg, &size)) return NULL;
    int64_t block = blocks_take(self, size);
    return block < 0 ? NULL : PyLong_FromLongLong(block);
}

static PyObject *blocks_free(Blocks *self, PyObject *arg) {
    uint64_t block;
    if (as_u64(arg, &block)) return NULL;
    uint64_t size = blocks_give(self, block);
    return size ? PyLong_FromUnsignedLongLong(size) : NULL;
}

static PyObject *blocks_keep_pages(Blocks *self, PyObject *unused) {
    self->returns_pages = 0;
    Py_RETURN_NONE;
}

static PyObject *blocks_clear(Blocks *self, PyObject *unused) {
    if (self->pages && self->returns_pages)
        madvise((char *)self->region.buf + self->start, self->pages * self->page, MADV_REMOVE);
    blocks_reset(self);
    Py_RETURN_NONE;
}

static PyObject *blocks_close(Blocks *self, PyObject *unused) {
    blocks_reset(self);
    if (self->open) {
        self->open = 0;
        self->start = self->end = 0; /* alloc finds no page from now on */
        PyBuffer_Release(&self->region);
    }
    Py_RETURN_NONE;
}

static PyMethodDef blocks_methods[] = {
    {"close", (PyCFunction)blocks_close, METH_NOARGS, "Forget every block; release the region."},
    {"alloc", (PyCFunction)blocks_alloc, METH_O, "alloc(size): a free block's offset, or 0."},
    {"free", (PyCFunction)blocks_free, METH_O, "free(block): give it back; its size."},
    {"keep_pages", (PyCFunction)blocks_keep_pages, METH_NOARGS,
     "Stop giving empty pages' memory back."},
    {"clear", (PyCFunction)blocks_clear, METH_NOARGS, "Free everything."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BlocksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "blinkstore_gunicorn.shm._native.Blocks",
    .tp_doc = "blocks.Blocks in C: the data area's allocator.",
    .tp_basicsize = sizeof(Blocks),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)blocks_init,
    .tp_dealloc = (destructor)blocks_dealloc,
    .tp_methods = blocks_methods,
};

/* ========================================================================================= */
/* Publisher: the writer's stores into its own (writable) region                             */
/* ========================================================================================= */

#define HALF_SHIFT 62 /* migration.HALF_SHIFT */
#define SLOT_MASK (((uint64_t)1 << HALF_SHIFT) - 1)
#define TOMBSTONE UINT64_MAX

/* The writer's own view: the live table (writer._t0, _slots, _half) and, while the table
 * grows, the migration (migration.Migration's state: the same arrays, shared with Python). */
typedef struct {
    PyObject_HEAD
    Py_buffer region;
    Py_buffer marks;
    int open;
    int checksum;
    uint64_t *w;      /* the region as words */
    uint64_t words;   /* its length in words */
    uint64_t t0, slots, half;
    /* the migration (migrating != 0): migration.py's attributes of the same names */
    int migrating;
    Py_buffer moved_buf, reverse_buf;
    int64_t *moved, *reverse;
    PyObject *far; /* migration.Migration.far: new slots filled MAX_PROBE or more past home */
    uint64_t new_t0, new_slots, new_half, old_slots, cursor, new_used;
    unsigned char *live_marks, *new_marks;
    /* what publish() needs of the writer: its allocator, its "ask the store" entries (a dict,
     * key -> slot), the hash secret, the migration's step; and the writer's counters */
    Blocks *blocks;
    PyObject *ask;
    PyObject *general; /* writer._general: publish() hands it the cases it does not take */
    uint64_t mul, prime, step, max_value;
    unsigned long long live, used; /* RegionWriter: keys in the table, slots ever filled */
    unsigned long long cap;        /* the most keys it takes: writer._general refuses more */
    long long batch_depth;         /* begin_batch calls not ended yet */
} Publisher;

static void publisher_end_migration(Publisher *self) {
    if (self->migrating) {
        self->migrating = 0;
        PyBuffer_Release(&self->moved_buf);
        PyBuffer_Release(&self->reverse_buf);
        Py_CLEAR(self->far);
    }
}

static void publisher_release(Publisher *self) {
    publisher_end_migration(self);
    if (self->open) {
        self->open = 0;
        self->slots = 0;
        PyBuffer_Release(&self->region);
        PyBuffer_Release(&self->marks);
    }
}

static int publisher_traverse(Publisher *self, visitproc visit, void *arg) {
    Py_VISIT(self->blocks);
    Py_VISIT(self->ask);
    Py_VISIT(self->general);
    Py_VISIT(self->far);
    return 0;
}

static int publisher_clear(Publisher *self) {
    Py_CLEAR(self->blocks);
    Py_CLEAR(self->ask);
    Py_CLEAR(self->general);
    Py_CLEAR(self->far);
    return 0;
}

static void publisher_dealloc(Publisher *self) {
    PyObject_GC_UnTrack(self);
    publisher_release(self);
    publisher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int publisher_init(Publisher *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"region", "marks", "checksum", "max_value", "general", "blocks",
                             "ask", "mul", "prime", "step", NULL};
    PyObject *region, *marks, *general, *blocks, *ask;
    int checksum;
    unsigned long long max_value, mul, prime, step;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOpKOO!O!KKK", kwlist, &region, &marks,
                                     &checksum, &max_value, &general, &BlocksType, &blocks,
                                     &PyDict_Type, &ask, &mul, &prime, &step))
        return -1;
    if (!prime || !step || max_value > LOC_LEN_MASK || !PyCallable_Check(general)) {
        PyErr_SetString(PyExc_ValueError, "bad hash secret, step, max_value or general path");
        return -1;
    }
    if (self->open) {
        PyErr_SetString(PyExc_RuntimeError, "Publisher is already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(region, &self->region, PyBUF_WRITABLE) < 0) return -1;
    if (PyObject_GetBuffer(marks, &self->marks, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&self->region);
        return -1;
    }
    if ((uintptr_t)self->region.buf & 7 || self->region.len < 4096) {
        PyBuffer_Release(&self->region);
        PyBuffer_Release(&self->marks);
        PyErr_SetString(PyExc_ValueError, "not a region");
        return -1;
    }
    self->open = 1;
    self->checksum = checksum;
    self->w = self->region.buf;
    self->words = (uint64_t)self->region.len / 8;
    self->slots = 0;
    self->migrating = 0;
    Py_INCREF(blocks);
    Py_XSETREF(self->blocks, (Blocks *)blocks);
    Py_INCREF(ask);
    Py_XSETREF(self->ask, ask);
    Py_INCREF(general);
    Py_XSETREF(self->general, general);
    self->max_value = max_value;
    self->mul = mul;
    self->prime = prime;
    self->step = step;
    self->live = self->used = self->cap = 0;
    self->batch_depth = 0;
    return 0;
}

static int publisher_ready(Publisher *self) {
    if (self->open && self->slots) return 0;
    PyErr_SetString(PyExc_ValueError, "the region is closed or has no table");
    return -1;
}

/* A table of `slots` slots (a power of 2) at region word t0, inside the region. */
static int table_fits(Publisher *self, uint64_t t0, uint64_t slots) {
    if (slots && !(slots & (slots - 1)) && t0 <= self->words &&
        slots <= (self->words - t0) / SLOT_WORDS)
        return 0;
    PyErr_SetString(PyExc_ValueError, "table outside the region");
    return -1;
}

/* The live slot at region word slotw, or -1 (exception set). */
static int64_t live_slot(Publisher *self, PyObject *o) {
    uint64_t slotw;
    if (as_u64(o, &slotw) || publisher_ready(self)) return -1;
    if (slotw < self->t0 || (slotw - self->t0) & (SLOT_WORDS - 1) ||
        (slotw - self->t0) / SLOT_WORDS >= self->slots) {
        PyErr_SetString(PyExc_ValueError, "slot outside the live table");
        return -1;
    }
    return (int64_t)((slotw - self->t0) / SLOT_WORDS);
}

/* The block at byte offset o if nk + nv bytes fit after its header, or NULL. */
static char *block_at(Publisher *self, PyObject *o, uint64_t nk, uint64_t nv) {
    uint64_t block, size = (uint64_t)self->region.len;
    if (as_u64(o, &block)) return NULL;
    if (block & 7 || block > size || size - block < BLOCK_HEADER + nk + nv ||
        nv > LOC_LEN_MASK) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return NULL;
    }
    return (char *)self->region.buf + block;
}

/* migration.Migration._place: the first tombstone or empty slot of the new table on meta's
 * probe path, listed in `far` when it is MAX_PROBE or more past home. The new table is at
 * most half full (writer._start_migration sizes it), so one is found; the bound only keeps a
 * broken invariant from looping forever. */
static int64_t place_new(Publisher *self, uint64_t meta) {
    uint64_t *table = self->w + self->new_t0, mask = self->new_slots - 1;
    uint64_t slot = (meta >> 32) & mask;
    for (uint64_t n = 0; n < self->new_slots; n++) {
        uint64_t found = load_relaxed(&table[slot * SLOT_WORDS]);
        if (!found || found == TOMBSTONE) {
            self->new_used += !found;
            if (n >= MAX_PROBE) {
                PyObject *at = PyLong_FromUnsignedLongLong(slot);
                int failed = !at || PyList_Append(self->far, at) < 0;
                Py_XDECREF(at);
                if (failed) return -1;
            }
            return (int64_t)slot;
        }
        slot = (slot + 1) & mask;
    }
    PyErr_SetString(PyExc_RuntimeError, "the new table is full");
    return -1;
}

/* migration.Migration.mirror: bring the new table in line with live `slot` (if moved). */
static int mirror(Publisher *self, uint64_t slot) {
    if (!self->migrating || slot >= self->cursor) return 0;
    uint64_t *live = self->w + self->t0 + slot * SLOT_WORDS, *table = self->w + self->new_t0;
    uint64_t meta = load_relaxed(&live[META]);
    int64_t moved = self->moved[slot];
    if (moved >= 0 && load_relaxed(&table[moved * SLOT_WORDS]) != meta) {
        /* deleted, or the slot now holds another key (whose probe path differs) */
        store_relaxed(&table[moved * SLOT_WORDS], TOMBSTONE);
        self->reverse[moved] = self->moved[slot] = -1;
        moved = -1;
    }
    if (!meta || meta == TOMBSTONE) return 0;
    if (moved < 0) {
        moved = place_new(self, meta);
        if (moved < 0) return -1;
        self->moved[slot] = moved;
        self->reverse[moved] = (int64_t)slot;
    }
    uint64_t *s = table + moved * SLOT_WORDS, loc = load_relaxed(&live[LOC]);
    store_relaxed(&s[META], meta);
    store_relaxed(&s[SEQ], 2);
    store_relaxed(&s[LOC], loc);
    store_relaxed(&s[EXPIRE], load_relaxed(&live[EXPIRE]));
    uint64_t at = (loc >> LOC_SHIFT >> 3) + BLOCK_SLOT;
    if (loc && at < self->words) store_relaxed(&self->w[at], self->new_half << HALF_SHIFT | (uint64_t)moved);
    return 0;
}

/* After a write to live `slot`: the result of a method that wrote it. */
static PyObject *mirrored(Publisher *self, uint64_t slot, PyObject *result) {
    if (result && mirror(self, slot) < 0) Py_CLEAR(result);
    return result;
}

static inline uint64_t open_slot(uint64_t *s) {
    uint64_t seq = load_relaxed(&s[SEQ]);
    store_relaxed(&s[SEQ], seq + 1);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return seq;
}

static inline void set_checksum(Publisher *self, char *block, const char *k, size_t nk,
                                const char *v, size_t nv, uint64_t expire_at) {
    if (self->checksum)
        store_relaxed((uint64_t *)block + BLOCK_CHECKSUM, entry_checksum(k, nk, v, nv, expire_at));
}

/* layout.block_size */
static uint64_t block_size(uint64_t n) {
    if (n <= 256) return (n + 15) & ~(uint64_t)15;
    int bits = 64 - __builtin_clzll(n);
    uint64_t step = (uint64_t)1 << (bits - 5);
    return (n + step - 1) & ~(step - 1);
}

/* table(t0, slots, half): the live table is at region word t0, `slots` slots, in `half`. */
static PyObject *publisher_table(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t t0, slots, half;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "table(t0, slots, half)");
        return NULL;
    }
    if (as_u64(args[0], &t0) || as_u64(args[1], &slots) || as_u64(args[2], &half)) return NULL;
    if (!self->open || table_fits(self, t0, slots) || half > 1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad table");
        return NULL;
    }
    if (self->migrating) {
        PyErr_SetString(PyExc_RuntimeError, "end the migration first");
        return NULL;
    }
    self->t0 = t0;
    self->slots = slots;
    self->half = half;
    Py_RETURN_NONE;
}

static int array_of(PyObject *o, Py_buffer *view, uint64_t items) {
    if (PyObject_GetBuffer(o, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != 8 || (uint64_t)view->len != items * 8 || (uintptr_t)view->buf & 7 ||
        !view->format || strcmp(view->format, "q")) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "want an array('q') of the table's size");
        return -1;
    }
    return 0;
}

/* migrate(t0, slots, half, live_marks, new_marks, moved, reverse, far): a migration into the
 * table at region word t0 starts (migration.Migration's arguments; moved and reverse are its
 * arrays, filled with -1, far its list); from now on every write this publisher makes is
 * mirrored. */
static PyObject *publisher_migrate(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t t0, slots, half, live_marks, new_marks;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "migrate(t0, slots, half, live_marks, new_marks, moved, reverse, far)");
        return NULL;
    }
    if (!PyList_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "far must be a list");
        return NULL;
    }
    if (as_u64(args[0], &t0) || as_u64(args[1], &slots) || as_u64(args[2], &half) ||
        as_u64(args[3], &live_marks) || as_u64(args[4], &new_marks) || publisher_ready(self) ||
        table_fits(self, t0, slots))
        return NULL;
    uint64_t marks = (uint64_t)self->marks.len;
    if (self->migrating || half > 1 || half == self->half || live_marks > marks ||
        self->slots > marks - live_marks || new_marks > marks || slots > marks - new_marks) {
        PyErr_SetString(PyExc_ValueError, "bad migration");
        return NULL;
    }
    if (array_of(args[5], &self->moved_buf, self->slots) < 0) return NULL;
    if (array_of(args[6], &self->reverse_buf, slots) < 0) {
        PyBuffer_Release(&self->moved_buf);
        return NULL;
    }
    self->moved = self->moved_buf.buf;
    self->reverse = self->reverse_buf.buf;
    Py_XSETREF(self->far, Py_NewRef(args[7]));
    self->new_t0 = t0;
    self->new_slots = slots;
    self->new_half = half;
    self->old_slots = self->slots;
    self->live_marks = (unsigned char *)self->marks.buf + live_marks;
    self->new_marks = (unsigned char *)self->marks.buf + new_marks;
    self->cursor = self->new_used = 0;
    self->migrating = 1;
    Py_RETURN_NONE;
}

/* migration.Migration.step: move the next n live slots; 1 once all moved, -1 on error. */
static int step(Publisher *self, uint64_t n) {
    uint64_t end = self->old_slots - self->cursor < n ? self->old_slots : self->cursor + n;
    uint64_t *live = self->w + self->t0;
    for (uint64_t slot = self->cursor; slot < end; slot++) {
        self->cursor = slot + 1;
        uint64_t meta = load_relaxed(&live[slot * SLOT_WORDS]);
        if (meta && meta != TOMBSTONE) {
            if (mirror(self, slot) < 0) return -1;
            if (__atomic_load_n(&self->live_marks[slot], __ATOMIC_RELAXED))
                __atomic_store_n(&self->new_marks[self->moved[slot]], 1, __ATOMIC_RELAXED);
        }
    }
    return self->cursor == self->old_slots;
}

/* step(n): move the next n live slots into the new table; True once all moved. */
static PyObject *publisher_step(Publisher *self, PyObject *arg) {
    uint64_t n;
    if (as_u64(arg, &n)) return NULL;
    if (!self->migrating) {
        PyErr_SetString(PyExc_ValueError, "no migration");
        return NULL;
    }
    int done = step(self, n);
    return done < 0 ? NULL : PyBool_FromLong(done);
}

/* mirror(slot): migration.Migration.mirror, after the writer changed live `slot` itself. */
static PyObject *publisher_mirror(Publisher *self, PyObject *arg) {
    uint64_t slot;
    if (as_u64(arg, &slot)) return NULL;
    if (self->migrating && slot >= self->old_slots) {
        PyErr_SetString(PyExc_ValueError, "slot outside the live table");
        return NULL;
    }
    if (mirror(self, slot) < 0) return NULL;
    Py_RETURN_NONE;
}

/* end_migration(): the migration is over (finished or dropped); returns Migration.used. */
static PyObject *publisher_end(Publisher *self, PyObject *unused) {
    uint64_t used = self->migrating ? self->new_used : 0;
    publisher_end_migration(self);
    return PyLong_FromUnsignedLongLong(used);
}

/* writer._new_slot's probe of the live table for an absent key of hash h: the first tombstone
 * or empty slot, as slot << 1 | (1 if it was empty); -1 (exception set) if there is none. */
static int64_t probe(Publisher *self, uint64_t h) {
    uint64_t *t = self->w + self->t0, mask = self->slots - 1, slot = h & mask;
    for (uint64_t n = 0; n < self->slots; n++) {
        uint64_t meta = load_relaxed(&t[slot * SLOT_WORDS]);
        if (!meta) return (int64_t)(slot << 1 | 1);
        if (meta == TOMBSTONE) return (int64_t)(slot << 1);
        slot = (slot + 1) & mask;
    }
    PyErr_SetString(PyExc_RuntimeError, "the table is full");
    return -1;
}

/* probe(h): that probe, as slot << 1 | was_empty. */
static PyObject *publisher_probe(Publisher *self, PyObject *arg) {
    uint64_t h;
    if (as_u64(arg, &h) || publisher_ready(self)) return NULL;
    int64_t found = probe(self, h);
    return found < 0 ? NULL : PyLong_FromLongLong(found);
}

/* The live slot of a block whose slot word is `tag`: the slot it names in the live half, or,
 * while a migration runs, the live slot of the new-table slot it names (a moved entry's block
 * names its new slot: writer._slot_of). -1 when neither: an entry in no table (UNPLACED), or a
 * word out of range. */
static int64_t slot_of_tag(Publisher *self, uint64_t tag) {
    uint64_t half = tag >> HALF_SHIFT, slot = tag & SLOT_MASK;
    if (half == self->half) return slot < self->slots ? (int64_t)slot : -1;
    if (!self->migrating || half != self->new_half || slot >= self->new_slots) return -1;
    int64_t live = self->reverse[slot];
    return live >= 0 && (uint64_t)live < self->slots ? live : -1;
}

/* slot_of(tag): writer._slot_of's answer for a block slot word (slot_of_tag). */
static PyObject *publisher_slot_of(Publisher *self, PyObject *arg) {
    uint64_t tag;
    if (as_u64(arg, &tag) || publisher_ready(self)) return NULL;
    return PyLong_FromLongLong(slot_of_tag(self, tag));
}

/* The common overwrite: the key's block (at byte offset block) has a live slot (in the live
 * half, or moved by the running migration: one SET in 17 of a 100,000-key fill)
 * and the new value fits a block of the same size, so it is rewritten in place, mirrored. 1
 * when done, 0 when that is not the case (nothing written), -1 on error (exception set). */
static int overwrite(Publisher *self, uint64_t block, PyObject *key, PyObject *value,
                     uint64_t expire_at, uint64_t max_value) {
    uint64_t size = (uint64_t)self->region.len;
    if (block & 7 || block > size - BLOCK_HEADER) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return -1;
    }
    const char *k = PyBytes_AS_STRING(key), *v = PyBytes_AS_STRING(value);
    uint64_t nk = (uint64_t)PyBytes_GET_SIZE(key), nv = (uint64_t)PyBytes_GET_SIZE(value);
    char *base = (char *)self->region.buf;
    uint64_t *bw = (uint64_t *)(base + block);
    uint64_t tag = load_relaxed(&bw[BLOCK_SLOT]), old = load_relaxed(&bw[BLOCK_LENGTHS]);
    int64_t live = slot_of_tag(self, tag);
    uint64_t slot = (uint64_t)live, lengths = nk << 32 | nv;
    if (live < 0 || nv > max_value ||
        (old != lengths && block_size(BLOCK_HEADER + nk + nv) !=
                               block_size(BLOCK_HEADER + (old >> 32) + (old & 0xFFFFFFFFu))))
        return 0;
    if (nv > LOC_LEN_MASK || size - block - BLOCK_HEADER < nk + nv) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return -1;
    }
    uint64_t *s = self->w + self->t0 + slot * SLOT_WORDS;
    uint64_t seq = open_slot(s);
    memcpy(base + block + BLOCK_HEADER + nk, v, nv);
    if (old != lengths) {
        store_relaxed(&bw[BLOCK_LENGTHS], lengths);
        store_relaxed(&s[LOC], block << LOC_SHIFT | nv);
    }
    set_checksum(self, base + block, k, nk, v, nv, expire_at);
    store_relaxed(&s[EXPIRE], expire_at);
    store_release(&s[SEQ], seq + 2);
    return mirror(self, slot) < 0 ? -1 : 1;
}

/* Fill the fresh block at byte offset block (not visible yet: no slot points at it), its block
 * slot word `tag`. The caller checked that nk + nv bytes after its header are in the region. */
static void fill(Publisher *self, char *block, uint64_t tag, const char *k, uint64_t nk,
                 const char *v, uint64_t nv, uint64_t expire_at) {
    uint64_t *bw = (uint64_t *)block;
    store_relaxed(&bw[BLOCK_SLOT], tag);
    memcpy(block + BLOCK_HEADER, k, nk);
    memcpy(block + BLOCK_HEADER + nk, v, nv);
    store_relaxed(&bw[BLOCK_LENGTHS], nk << 32 | nv);
    set_checksum(self, block, k, nk, v, nv, expire_at);
}

/* Fill the fresh block and point live slot `slot` at it under its sequence, mirrored; -1 on
 * error (exception set). The caller checked that the slot is in the live table. */
static int place(Publisher *self, uint64_t slot, char *block, const char *k, uint64_t nk,
                 const char *v, uint64_t nv, uint64_t meta, uint64_t expire_at) {
    uint64_t *s = self->w + self->t0 + slot * SLOT_WORDS;
    fill(self, block, self->half << HALF_SHIFT | slot, k, nk, v, nv, expire_at);
    uint64_t seq = open_slot(s);
    store_relaxed(&s[META], meta);
    store_relaxed(&s[LOC], (uint64_t)(block - (char *)self->region.buf) << LOC_SHIFT | nv);
    store_relaxed(&s[EXPIRE], expire_at);
    store_release(&s[SEQ], seq + 2);
    return mirror(self, slot);
}

/* The common cases of writer.publish, with exactly the effects of its general path: an
 * overwrite in place (handle: the key's block), or a new key that needs no migration to start
 * or finish and gets a block (hash, allocation, migration step, probe, block and slot).
 * Returns the block, 0 when the case is none of these (nothing was written), -1 on error. */
static int64_t publish(Publisher *self, PyObject *key, PyObject *value, uint64_t expire_at,
                       uint64_t handle) {
    uint64_t max_value = self->max_value;
    if (handle) {
        int done = overwrite(self, handle, key, value, expire_at, max_value);
        return done <= 0 ? done : (int64_t)handle;
    }
    uint64_t nk = (uint64_t)PyBytes_GET_SIZE(key), nv = (uint64_t)PyBytes_GET_SIZE(value);
    if (!nk || nv > max_value) return 0;
    if (PyDict_GET_SIZE(self->ask)) {
        int asks = PyDict_Contains(self->ask, key);
        if (asks) return asks < 0 ? -1 : 0;
    }
    if (self->live >= self->cap) return 0; /* the table is full: RegionFull, nothing written */
    /* writer._new_slot would start a migration, or finish one (the step reaches the end) */
    uint64_t n = (self->used + 1) * 10 > self->slots * 8 ? self->slots : self->step;
    if (self->migrating ? n >= self->old_slots - self->cursor
                        : (self->used + 1) * 2 > self->slots)
        return 0;
    /* The probe and the allocation first: a key that would lie MAX_PROBE or more past its home,
     * or a failed allocation, changes nothing (the general path then leaves the key out of the
     * table, or makes an "ask the store" entry). The step that follows only writes the new
     * table, so the probe's slot stays free, and no step or probe touches a free block. */
    const char *k = PyBytes_AS_STRING(key);
    uint64_t h = key_hash((const unsigned char *)k, (Py_ssize_t)nk, self->mul, self->prime);
    int64_t found = probe(self, h);
    if (found < 0) return -1;
    uint64_t slot = (uint64_t)found >> 1;
    if (((slot - h) & (self->slots - 1)) >= MAX_PROBE) return 0;
    int64_t block = blocks_take(self->blocks, block_size(BLOCK_HEADER + nk + nv));
    if (block <= 0) return block;
    if ((uint64_t)block > (uint64_t)self->region.len - BLOCK_HEADER - nk - nv) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return -1;
    }
    if (self->migrating && step(self, n) < 0) return -1;
    self->live++;
    self->used += (uint64_t)found & 1;
    if (place(self, slot, (char *)self->region.buf + block, k, nk,
              PyBytes_AS_STRING(value), nv, h << 32 | nk, expire_at) < 0)
        return -1;
    return block;
}

/* publish(key, value, expire_at, handle): RegionWriter.publish: the common cases here, the
 * others by the writer's general path (the `general` callable, with the same arguments). */
static PyObject *publisher_publish(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t expire_at, handle;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "publish(key, value, expire_at, handle)");
        return NULL;
    }
    if (want_bytes(args[0], "key") || want_bytes(args[1], "value") ||
        as_u64(args[2], &expire_at) || as_u64(args[3], &handle) || publisher_ready(self))
        return NULL;
    int64_t block = publish(self, args[0], args[1], expire_at, handle);
    if (block < 0) return NULL;
    /* An overwrite in place hands the caller's own handle back: no int to make, and none for
     * the engine's dict to free (whose allocator pages are as cold as the entry). */
    if (block) return (uint64_t)block == handle ? Py_NewRef(args[3]) : PyLong_FromLongLong(block);
    return PyObject_Vectorcall(self->general, args, 4, NULL);
}

/* read(block): RegionWriter.read, the value in the block at that byte offset. */
static PyObject *publisher_read(Publisher *self, PyObject *arg) {
    uint64_t block, size = (uint64_t)self->region.len;
    if (as_u64(arg, &block)) return NULL;
    if (!self->open || block & 7 || block > size - BLOCK_HEADER) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return NULL;
    }
    uint64_t lengths = load_relaxed(&self->w[(block >> 3) + BLOCK_LENGTHS]);
    uint64_t nk = lengths >> 32, nv = lengths & 0xFFFFFFFFu;
    if (nk + nv > size - block - BLOCK_HEADER) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return NULL;
    }
    return PyBytes_FromStringAndSize((char *)self->region.buf + block + BLOCK_HEADER + nk,
                                     (Py_ssize_t)nv);
}

/* block_bytes(block): writer.block_bytes (the size of the block its lengths need). */
static PyObject *publisher_block_bytes(Publisher *self, PyObject *arg) {
    uint64_t block;
    if (as_u64(arg, &block)) return NULL;
    if (!self->open || block & 7 || block > (uint64_t)self->region.len - BLOCK_HEADER) {
        PyErr_SetString(PyExc_ValueError, "block outside the region");
        return NULL;
    }
    uint64_t *bw = (uint64_t *)((char *)self->region.buf + block);
    uint64_t lengths = load_relaxed(&bw[BLOCK_LENGTHS]), tag = load_relaxed(&bw[BLOCK_SLOT]);
    /* The engine asks this right before it overwrites the entry (the block's cost leaves its
     * account): start loading the slot that publish will write, so that its cache miss
     * overlaps the interpreter's work in between instead of following the block's. A hint
     * only: nothing here depends on it. */
    int64_t slot = slot_of_tag(self, tag);
    if (slot >= 0) __builtin_prefetch(self->w + self->t0 + (uint64_t)slot * SLOT_WORDS, 1);
    return PyLong_FromUnsignedLongLong(
        block_size(BLOCK_HEADER + (lengths >> 32) + (lengths & 0xFFFFFFFFu)));
}

/* rewrite(slotw, block, key, value, expire_at): writer.publish's in-place overwrite (same
 * block size): the value, the lengths and LOC if the length changed, checksum, deadline. */
static PyObject *publisher_rewrite(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t expire_at;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "rewrite(slotw, block, key, value, expire_at)");
        return NULL;
    }
    if (want_bytes(args[2], "key") || want_bytes(args[3], "value") || as_u64(args[4], &expire_at))
        return NULL;
    const char *k = PyBytes_AS_STRING(args[2]), *v = PyBytes_AS_STRING(args[3]);
    uint64_t nk = (uint64_t)PyBytes_GET_SIZE(args[2]), nv = (uint64_t)PyBytes_GET_SIZE(args[3]);
    int64_t slot = live_slot(self, args[0]);
    char *block = slot >= 0 ? block_at(self, args[1], nk, nv) : NULL;
    if (!block) return NULL;
    uint64_t *s = self->w + self->t0 + (uint64_t)slot * SLOT_WORDS;
    uint64_t *bw = (uint64_t *)block, lengths = nk << 32 | nv;
    uint64_t seq = open_slot(s);
    memcpy(block + BLOCK_HEADER + nk, v, nv);
    if (load_relaxed(&bw[BLOCK_LENGTHS]) != lengths) {
        store_relaxed(&bw[BLOCK_LENGTHS], lengths);
        store_relaxed(&s[LOC], (uint64_t)(block - (char *)self->region.buf) << LOC_SHIFT | nv);
    }
    set_checksum(self, block, k, nk, v, nv, expire_at);
    store_relaxed(&s[EXPIRE], expire_at);
    store_release(&s[SEQ], seq + 2);
    return mirrored(self, (uint64_t)slot, Py_NewRef(Py_None));
}

/* place(slotw, block, key, value, meta, expire_at): fill a fresh block and point the live
 * slot at region word slotw at it. */
static PyObject *publisher_place(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t meta, expire_at;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "place(slotw, block, key, value, meta, expire_at)");
        return NULL;
    }
    if (want_bytes(args[2], "key") || want_bytes(args[3], "value") || as_u64(args[4], &meta) ||
        as_u64(args[5], &expire_at))
        return NULL;
    const char *k = PyBytes_AS_STRING(args[2]), *v = PyBytes_AS_STRING(args[3]);
    uint64_t nk = (uint64_t)PyBytes_GET_SIZE(args[2]), nv = (uint64_t)PyBytes_GET_SIZE(args[3]);
    int64_t slot = live_slot(self, args[0]);
    char *block = slot >= 0 ? block_at(self, args[1], nk, nv) : NULL;
    if (!block || place(self, (uint64_t)slot, block, k, nk, v, nv, meta, expire_at) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* fill(block, key, value, expire_at, tag): fill a fresh block that no slot points at. */
static PyObject *publisher_fill(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t expire_at, tag;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "fill(block, key, value, expire_at, tag)");
        return NULL;
    }
    if (want_bytes(args[1], "key") || want_bytes(args[2], "value") ||
        as_u64(args[3], &expire_at) || as_u64(args[4], &tag) || publisher_ready(self))
        return NULL;
    const char *k = PyBytes_AS_STRING(args[1]), *v = PyBytes_AS_STRING(args[2]);
    uint64_t nk = (uint64_t)PyBytes_GET_SIZE(args[1]), nv = (uint64_t)PyBytes_GET_SIZE(args[2]);
    char *block = block_at(self, args[0], nk, nv);
    if (!block) return NULL;
    fill(self, block, tag, k, nk, v, nv, expire_at);
    Py_RETURN_NONE;
}

/* update(slotw, meta, loc, expire_at): writer._update. */
static PyObject *publisher_update(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t meta, loc, expire_at;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "update(slotw, meta, loc, expire_at)");
        return NULL;
    }
    int64_t slot = live_slot(self, args[0]);
    if (slot < 0 || as_u64(args[1], &meta) || as_u64(args[2], &loc) ||
        as_u64(args[3], &expire_at))
        return NULL;
    uint64_t *s = self->w + self->t0 + (uint64_t)slot * SLOT_WORDS;
    uint64_t seq = open_slot(s);
    store_relaxed(&s[META], meta);
    store_relaxed(&s[LOC], loc);
    store_relaxed(&s[EXPIRE], expire_at);
    store_release(&s[SEQ], seq + 2);
    return mirrored(self, (uint64_t)slot, Py_NewRef(Py_None));
}

/* begin_batch() and end_batch(): the reference's, the write epoch odd from the outermost begin
 * to its end: odd before any entry of the batch changes, even after all have. */
static int batch_open(Publisher *self) {
    if (self->open) return 0;
    PyErr_SetString(PyExc_ValueError, "the region is closed");
    return -1;
}

static PyObject *publisher_begin_batch(Publisher *self, PyObject *unused) {
    if (batch_open(self)) return NULL;
    if (++self->batch_depth == 1) {
        store_relaxed(&self->w[H_WRITE_EPOCH], load_relaxed(&self->w[H_WRITE_EPOCH]) + 1);
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
    Py_RETURN_NONE;
}

static PyObject *publisher_end_batch(Publisher *self, PyObject *unused) {
    if (batch_open(self)) return NULL;
    if (--self->batch_depth == 0)
        store_release(&self->w[H_WRITE_EPOCH], load_relaxed(&self->w[H_WRITE_EPOCH]) + 1);
    Py_RETURN_NONE;
}

static PyObject *publisher_close(Publisher *self, PyObject *unused) {
    publisher_release(self);
    publisher_clear(self); /* the writer's general path refers back to the writer */
    Py_RETURN_NONE;
}

static PyMethodDef publisher_methods[] = {
    {"table", (PyCFunction)(void (*)(void))publisher_table, METH_FASTCALL,
     "table(t0, slots, half): the live table."},
    {"migrate", (PyCFunction)(void (*)(void))publisher_migrate, METH_FASTCALL,
     "migrate(t0, slots, half, live_marks, new_marks, moved, reverse, far): a migration "
     "starts."},
    {"step", (PyCFunction)publisher_step, METH_O, "step(n): move n more slots; True when done."},
    {"mirror", (PyCFunction)publisher_mirror, METH_O, "mirror(slot): after a write to slot."},
    {"end_migration", (PyCFunction)publisher_end, METH_NOARGS,
     "end_migration(): stop mirroring; the new table's used slots."},
    {"probe", (PyCFunction)publisher_probe, METH_O,
     "probe(h): the free slot for hash h, as slot << 1 | was_empty."},
    {"slot_of", (PyCFunction)publisher_slot_of, METH_O,
     "slot_of(tag): the live slot a block slot word leads to, or -1."},
    {"publish", (PyCFunction)(void (*)(void))publisher_publish, METH_FASTCALL,
     "publish(key, value, expire_at, handle): RegionWriter.publish."},
    {"read", (PyCFunction)publisher_read, METH_O, "read(block): the value in that block."},
    {"block_bytes", (PyCFunction)publisher_block_bytes, METH_O,
     "block_bytes(block): the bytes of the block at that offset."},
    {"rewrite", (PyCFunction)(void (*)(void))publisher_rewrite, METH_FASTCALL,
     "rewrite(slotw, block, key, value, expire_at): an in-place overwrite."},
    {"place", (PyCFunction)(void (*)(void))publisher_place, METH_FASTCALL,
     "place(slotw, block, key, value, meta, expire_at): a new block, then the slot."},
    {"fill", (PyCFunction)(void (*)(void))publisher_fill, METH_FASTCALL,
     "fill(block, key, value, expire_at, tag): a new block that no slot points at."},
    {"update", (PyCFunction)(void (*)(void))publisher_update, METH_FASTCALL,
     "update(slotw, meta, loc, expire_at): rewrite a slot under its sequence."},
    {"begin_batch", (PyCFunction)publisher_begin_batch, METH_NOARGS,
     "begin_batch(): a multi-key write starts (RegionWriter.begin_batch)."},
    {"end_batch", (PyCFunction)publisher_end_batch, METH_NOARGS,
     "end_batch(): the multi-key write is complete."},
    {"close", (PyCFunction)publisher_close, METH_NOARGS, "Release the mappings."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef publisher_members[] = {
    {"live", T_ULONGLONG, offsetof(Publisher, live), 0, "Keys in the table (RegionWriter's)."},
    {"used", T_ULONGLONG, offsetof(Publisher, used), 0,
     "Slots of the live table ever filled, tombstones included (RegionWriter's)."},
    {"cap", T_ULONGLONG, offsetof(Publisher, cap), 0,
     "The most keys the table takes: a new key past them is refused (RegionWriter's)."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PublisherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "blinkstore_gunicorn.shm._native.Publisher",
    .tp_doc = "The writer's slot and block stores and its table migration in C.",
    .tp_basicsize = sizeof(Publisher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)publisher_init,
    .tp_dealloc = (destructor)publisher_dealloc,
    .tp_traverse = (traverseproc)publisher_traverse,
    .tp_clear = (inquiry)publisher_clear,
    .tp_methods = publisher_methods,
    .tp_members = publisher_members,
};
/* ========================================================================================= */

static PyObject *py_key_hash(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t mul, prime;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "key_hash(key, mul, prime)");
        return NULL;
    }
    if (want_bytes(args[0], "key") || as_u64(args[1], &mul) || as_u64(args[2], &prime))
        return NULL;
    if (!prime) {
        PyErr_SetString(PyExc_ValueError, "prime must be positive");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(key_hash((const unsigned char *)PyBytes_AS_STRING(args[0]),
                                                PyBytes_GET_SIZE(args[0]), mul, prime));
}

static PyObject *py_entry_checksum(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t expire_at;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "entry_checksum(key, value, expire_at)");
        return NULL;
    }
    if (want_bytes(args[0], "key") || want_bytes(args[1], "value") || as_u64(args[2], &expire_at))
        return NULL;
    return PyLong_FromUnsignedLongLong(
        entry_checksum(PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0]),
                       PyBytes_AS_STRING(args[1]), (size_t)PyBytes_GET_SIZE(args[1]), expire_at));
}

static PyObject *py_block_size(PyObject *mod, PyObject *arg) {
    uint64_t n;
    if (as_u64(arg, &n)) return NULL;
    if (n >> 62) {
        PyErr_SetString(PyExc_ValueError, "size out of range");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(block_size(n));
}

static PyObject *py_constants(PyObject *mod, PyObject *unused) {
    return Py_BuildValue("{sisisisisisisisisisisisisisisLsisK}", "H_TOKEN", H_TOKEN,
                         "H_HEARTBEAT", H_HEARTBEAT, "H_WRITE_EPOCH", H_WRITE_EPOCH, "META", META,
                         "SEQ", SEQ, "LOC", LOC, "EXPIRE", EXPIRE,
                         "SLOT_WORDS", SLOT_WORDS, "BLOCK_LENGTHS", BLOCK_LENGTHS, "BLOCK_SLOT",
                         BLOCK_SLOT, "BLOCK_CHECKSUM", BLOCK_CHECKSUM, "BLOCK_HEADER",
                         BLOCK_HEADER, "LOC_SHIFT", LOC_SHIFT, "MAX_PROBE", MAX_PROBE,
                         "STALE_NS", (long long)STALE_NS, "COUNTER_BYTES", COUNTER_BYTES,
                         "HASH_MIX", (unsigned long long)HASH_MIX);
}

static PyMethodDef module_methods[] = {
    {"key_hash", (PyCFunction)(void (*)(void))py_key_hash, METH_FASTCALL,
     "layout.key_hash in C."},
    {"entry_checksum", (PyCFunction)(void (*)(void))py_entry_checksum, METH_FASTCALL,
     "layout.entry_checksum in C."},
    {"block_size", (PyCFunction)py_block_size, METH_O, "layout.block_size in C."},
    {"constants", (PyCFunction)py_constants, METH_NOARGS,
     "The layout constants compiled in (the tests compare them with layout.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "The shared region's hot paths in C (optional).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    crc_init();
    if (PyType_Ready(&LookupType) < 0 || PyType_Ready(&BlocksType) < 0 ||
        PyType_Ready(&PublisherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Lookup", (PyObject *)&LookupType) < 0 ||
        PyModule_AddObjectRef(m, "Blocks", (PyObject *)&BlocksType) < 0 ||
        PyModule_AddObjectRef(m, "Publisher", (PyObject *)&PublisherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
