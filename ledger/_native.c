/*
 * ledger._native: C versions of the two per-record hot spots of a node.
 *
 *   decode_record(b)   the fields of a canonical, well-formed record, or None
 *   verify_ed25519(f, domain, items)   many signature checks, GIL released once
 *
 * Both are accelerators for ledger/records.py and ledger/crypto.py, which
 * stay the reference: decode_record answers None for anything it is not
 * sure about (non-canonical bytes, a wrong type, deep nesting, anything
 * unusual) and the Python paths then decide, and name the error.  So the
 * contract tested in tests/test_native.py is one-sided: whenever this
 * returns fields, the Python decoder returns the same record.
 *
 * Canonical MessagePack (PROTOCOL section 1) is what msgpack-python's packer
 * writes for a normalised value: shortest integer, string, binary, array
 * and map headers; str for text and bin for bytes; no floats, no extension
 * types; map keys are str in ascending order of their UTF-8 bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Deeper structures are legal up to ledger.encoding._MAX_DEPTH (32) but
 * never seen in practice: the Python path handles them. */
#define MAX_DEPTH 16
#define PUBKEY_LEN 32
#define SIG_LEN 64
#define ID_LEN 32
#define MAX_KIND_CHARS 64
#define MAX_CHAIN_CHARS 64
#define MAX_ORIGIN_ENTRIES 16
#define MAX_PARENTS 16

/* A cursor over the input.  Every reader returns 0 on success and -1 for
 * "not canonical / not what the fast path handles"; -2 means a Python
 * exception is set (out of memory) and must propagate. */
typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} cursor;

#define NOT_HANDLED (-1)
#define PY_ERROR (-2)

static int need(cursor *c, Py_ssize_t n) {
    return (c->end - c->p) >= n ? 0 : NOT_HANDLED;
}

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Integers: the one shortest form msgpack-python writes. */
typedef struct {
    int negative;
    uint64_t u;  /* the value if !negative */
    int64_t s;   /* the value if negative */
} msg_int;

static int read_int_tag(cursor *c, unsigned char tag, msg_int *out) {
    out->negative = 0;
    if (tag <= 0x7f) { out->u = tag; return 0; }
    if (tag >= 0xe0) { out->negative = 1; out->s = (int8_t)tag; return 0; }
    switch (tag) {
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (tag - 0xcc);
        if (need(c, n)) return NOT_HANDLED;
        uint64_t v = be(c->p, n);
        c->p += n;
        /* uint8 only from 128, uint16 from 256, uint32 from 2^16, uint64 from 2^32 */
        uint64_t lo = tag == 0xcc ? 0x80 : tag == 0xcd ? 0x100 : tag == 0xce ? 0x10000 : 0x100000000ULL;
        if (v < lo) return NOT_HANDLED;
        out->u = v;
        return 0;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (tag - 0xd0);
        if (need(c, n)) return NOT_HANDLED;
        uint64_t raw = be(c->p, n);
        c->p += n;
        int64_t v;
        /* sign-extend from n bytes */
        if (n == 8) v = (int64_t)raw;
        else {
            uint64_t sign = 1ULL << (8 * n - 1);
            v = (int64_t)((raw ^ sign) - sign);
        }
        /* signed forms only for negatives below the next smaller form's range */
        int64_t hi = tag == 0xd0 ? -32 : tag == 0xd1 ? -128 : tag == 0xd2 ? -32768 : -2147483648LL;
        if (v >= hi) return NOT_HANDLED;
        out->negative = 1;
        out->s = v;
        return 0;
    }
    default:
        return NOT_HANDLED;
    }
}

static int is_int_tag(unsigned char tag) {
    return tag <= 0x7f || tag >= 0xe0 || (tag >= 0xcc && tag <= 0xcf) || (tag >= 0xd0 && tag <= 0xd3);
}

/* Length headers: fix forms, then 8/16/32-bit forms, each only where the
 * shorter one cannot hold the length. */
static int read_len(cursor *c, int n, Py_ssize_t min, Py_ssize_t *len) {
    if (need(c, n)) return NOT_HANDLED;
    uint64_t v = be(c->p, n);
    c->p += n;
    if (v < (uint64_t)min) return NOT_HANDLED;
    *len = (Py_ssize_t)v;
    return 0;
}

/* A str's UTF-8 bytes; 1 if tag is not a str tag. */
static int read_str_raw(cursor *c, unsigned char tag, const unsigned char **s, Py_ssize_t *len) {
    int r;
    if (tag >= 0xa0 && tag <= 0xbf) *len = tag & 0x1f;
    else if (tag == 0xd9) { if ((r = read_len(c, 1, 32, len))) return r; }
    else if (tag == 0xda) { if ((r = read_len(c, 2, 0x100, len))) return r; }
    else if (tag == 0xdb) { if ((r = read_len(c, 4, 0x10000, len))) return r; }
    else return NOT_HANDLED;
    if (need(c, *len)) return NOT_HANDLED;
    *s = c->p;
    c->p += *len;
    return 0;
}

static int read_bin_raw(cursor *c, unsigned char tag, const unsigned char **s, Py_ssize_t *len) {
    int r;
    if (tag == 0xc4) { if ((r = read_len(c, 1, 0, len))) return r; }
    else if (tag == 0xc5) { if ((r = read_len(c, 2, 0x100, len))) return r; }
    else if (tag == 0xc6) { if ((r = read_len(c, 4, 0x10000, len))) return r; }
    else return NOT_HANDLED;
    if (need(c, *len)) return NOT_HANDLED;
    *s = c->p;
    c->p += *len;
    return 0;
}

static int is_map_tag(unsigned char tag) { return (tag >= 0x80 && tag <= 0x8f) || tag == 0xde || tag == 0xdf; }
static int is_array_tag(unsigned char tag) { return (tag >= 0x90 && tag <= 0x9f) || tag == 0xdc || tag == 0xdd; }

static int read_container_len(cursor *c, unsigned char tag, Py_ssize_t *len) {
    if ((tag >= 0x80 && tag <= 0x8f) || (tag >= 0x90 && tag <= 0x9f)) { *len = tag & 0x0f; return 0; }
    if (tag == 0xdc || tag == 0xde) return read_len(c, 2, 16, len);
    if (tag == 0xdd || tag == 0xdf) return read_len(c, 4, 0x10000, len);
    return NOT_HANDLED;
}

/* Strict UTF-8 to str; NOT_HANDLED for invalid UTF-8 (msgpack raises, the
 * Python path reports it). */
static int make_str(const unsigned char *s, Py_ssize_t len, PyObject **out) {
    PyObject *u = PyUnicode_DecodeUTF8((const char *)s, len, NULL);
    if (u == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) { PyErr_Clear(); return NOT_HANDLED; }
        return PY_ERROR;
    }
    *out = u;
    return 0;
}

static int key_before(const unsigned char *a, Py_ssize_t alen, const unsigned char *b, Py_ssize_t blen) {
    /* 1 if a < b in the order of UTF-8 bytes (= code point order) */
    Py_ssize_t n = alen < blen ? alen : blen;
    int r = memcmp(a, b, (size_t)n);
    return r < 0 || (r == 0 && alen < blen);
}

static int read_value(cursor *c, int depth, PyObject **out);

/* A map with str keys strictly ascending; values through read_value. */
static int read_map_body(cursor *c, Py_ssize_t n, int depth, PyObject **out) {
    PyObject *d = PyDict_New();
    if (d == NULL) return PY_ERROR;
    const unsigned char *prev = NULL;
    Py_ssize_t prevlen = 0;
    int r;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (need(c, 1)) { r = NOT_HANDLED; goto fail; }
        unsigned char tag = *c->p++;
        const unsigned char *ks;
        Py_ssize_t klen;
        if ((r = read_str_raw(c, tag, &ks, &klen))) goto fail;
        if (prev != NULL && !key_before(prev, prevlen, ks, klen)) { r = NOT_HANDLED; goto fail; }
        prev = ks;
        prevlen = klen;
        PyObject *key, *val;
        if ((r = make_str(ks, klen, &key))) goto fail;
        if ((r = read_value(c, depth + 1, &val))) { Py_DECREF(key); goto fail; }
        int e = PyDict_SetItem(d, key, val);
        Py_DECREF(key);
        Py_DECREF(val);
        if (e < 0) { r = PY_ERROR; goto fail; }
    }
    *out = d;
    return 0;
fail:
    Py_DECREF(d);
    return r;
}

static int read_value(cursor *c, int depth, PyObject **out) {
    if (depth > MAX_DEPTH) return NOT_HANDLED;
    if (need(c, 1)) return NOT_HANDLED;
    unsigned char tag = *c->p++;
    int r;
    if (is_int_tag(tag)) {
        msg_int v;
        if ((r = read_int_tag(c, tag, &v))) return r;
        *out = v.negative ? PyLong_FromLongLong(v.s) : PyLong_FromUnsignedLongLong(v.u);
        return *out ? 0 : PY_ERROR;
    }
    if (tag == 0xc0) { Py_INCREF(Py_None); *out = Py_None; return 0; }
    if (tag == 0xc2) { Py_INCREF(Py_False); *out = Py_False; return 0; }
    if (tag == 0xc3) { Py_INCREF(Py_True); *out = Py_True; return 0; }
    if ((tag >= 0xa0 && tag <= 0xbf) || (tag >= 0xd9 && tag <= 0xdb)) {
        const unsigned char *s;
        Py_ssize_t len;
        if ((r = read_str_raw(c, tag, &s, &len))) return r;
        return make_str(s, len, out);
    }
    if (tag >= 0xc4 && tag <= 0xc6) {
        const unsigned char *s;
        Py_ssize_t len;
        if ((r = read_bin_raw(c, tag, &s, &len))) return r;
        *out = PyBytes_FromStringAndSize((const char *)s, len);
        return *out ? 0 : PY_ERROR;
    }
    if (is_array_tag(tag)) {
        Py_ssize_t n;
        if ((r = read_container_len(c, tag, &n))) return r;
        if (n > c->end - c->p) return NOT_HANDLED;  /* each item takes a byte at least */
        PyObject *l = PyList_New(n);
        if (l == NULL) return PY_ERROR;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item;
            if ((r = read_value(c, depth + 1, &item))) { Py_DECREF(l); return r; }
            PyList_SET_ITEM(l, i, item);
        }
        *out = l;
        return 0;
    }
    if (is_map_tag(tag)) {
        Py_ssize_t n;
        if ((r = read_container_len(c, tag, &n))) return r;
        if (n > (c->end - c->p) / 2) return NOT_HANDLED;
        return read_map_body(c, n, depth, out);
    }
    /* floats, extension types (the timestamp included), 0xc1 */
    return NOT_HANDLED;
}

/* The next byte must be exactly this fixstr key. */
static int expect_key(cursor *c, const char *key) {
    size_t n = strlen(key);
    if (need(c, (Py_ssize_t)n + 1)) return NOT_HANDLED;
    if (c->p[0] != (unsigned char)(0xa0 | n) || memcmp(c->p + 1, key, n) != 0) return NOT_HANDLED;
    c->p += n + 1;
    return 0;
}

static int read_uint(cursor *c, uint64_t *v) {
    if (need(c, 1)) return NOT_HANDLED;
    unsigned char tag = *c->p++;
    msg_int m;
    if (!is_int_tag(tag)) return NOT_HANDLED;
    int r = read_int_tag(c, tag, &m);
    if (r) return r;
    if (m.negative) return NOT_HANDLED;
    *v = m.u;
    return 0;
}

static int read_text(cursor *c, Py_ssize_t max_chars, PyObject **out) {
    if (need(c, 1)) return NOT_HANDLED;
    unsigned char tag = *c->p++;
    const unsigned char *s;
    Py_ssize_t len;
    int r = read_str_raw(c, tag, &s, &len);
    if (r) return r;
    if ((r = make_str(s, len, out))) return r;
    Py_ssize_t chars = PyUnicode_GET_LENGTH(*out);
    if (chars < 1 || chars > max_chars) { Py_CLEAR(*out); return NOT_HANDLED; }
    return 0;
}

static int read_fixed_bin(cursor *c, Py_ssize_t want, const unsigned char **s) {
    if (need(c, 1)) return NOT_HANDLED;
    unsigned char tag = *c->p++;
    Py_ssize_t len;
    int r = read_bin_raw(c, tag, s, &len);
    if (r) return r;
    return len == want ? 0 : NOT_HANDLED;
}

/*
 * decode_record(record_bytes) ->
 *   (chain, submitter, nonce, ts, kind, origin, body, parents) or None
 *
 * The record map's nine keys in canonical order: body, chain, kind, nonce,
 * origin, parents, submitter, ts, v.  Field rules are those of
 * ledger.records._record_from_map.
 */
static PyObject *decode_record(PyObject *self, PyObject *arg) {
    if (!PyBytes_CheckExact(arg)) Py_RETURN_NONE;
    cursor c = {(const unsigned char *)PyBytes_AS_STRING(arg),
                (const unsigned char *)PyBytes_AS_STRING(arg) + PyBytes_GET_SIZE(arg)};
    PyObject *body = NULL, *chain = NULL, *kind = NULL, *origin = NULL, *parents = NULL;
    PyObject *submitter = NULL, *nonce_o = NULL, *ts_o = NULL, *result = NULL;
    int r = 0;
    unsigned char tag;
    uint64_t nonce, ts, v;
    Py_ssize_t n;

#define STEP(x) do { if ((r = (x))) goto done; } while (0)
    STEP(need(&c, 1));
    if (*c.p++ != 0x89) { r = NOT_HANDLED; goto done; }

    STEP(expect_key(&c, "body"));
    STEP(need(&c, 1));
    tag = *c.p++;
    if (!is_map_tag(tag)) { r = NOT_HANDLED; goto done; }
    STEP(read_container_len(&c, tag, &n));
    if (n > (c.end - c.p) / 2) { r = NOT_HANDLED; goto done; }
    STEP(read_map_body(&c, n, 1, &body));

    STEP(expect_key(&c, "chain"));
    STEP(read_text(&c, MAX_CHAIN_CHARS, &chain));

    STEP(expect_key(&c, "kind"));
    STEP(read_text(&c, MAX_KIND_CHARS, &kind));

    STEP(expect_key(&c, "nonce"));
    STEP(read_uint(&c, &nonce));

    STEP(expect_key(&c, "origin"));
    STEP(need(&c, 1));
    tag = *c.p++;
    if (!is_map_tag(tag)) { r = NOT_HANDLED; goto done; }
    STEP(read_container_len(&c, tag, &n));
    if (n > MAX_ORIGIN_ENTRIES) { r = NOT_HANDLED; goto done; }
    STEP(read_map_body(&c, n, 1, &origin));
    {
        PyObject *k, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(origin, &pos, &k, &val))
            if (!PyUnicode_CheckExact(val)) { r = NOT_HANDLED; goto done; }
    }

    STEP(expect_key(&c, "parents"));
    STEP(need(&c, 1));
    tag = *c.p++;
    if (!is_array_tag(tag)) { r = NOT_HANDLED; goto done; }
    STEP(read_container_len(&c, tag, &n));
    if (n > MAX_PARENTS) { r = NOT_HANDLED; goto done; }
    {
        const unsigned char *ids[MAX_PARENTS];
        for (Py_ssize_t i = 0; i < n; i++) {
            STEP(read_fixed_bin(&c, ID_LEN, &ids[i]));
            for (Py_ssize_t j = 0; j < i; j++)
                if (memcmp(ids[i], ids[j], ID_LEN) == 0) { r = NOT_HANDLED; goto done; }
        }
        parents = PyTuple_New(n);
        if (parents == NULL) { r = PY_ERROR; goto done; }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)ids[i], ID_LEN);
            if (b == NULL) { r = PY_ERROR; goto done; }
            PyTuple_SET_ITEM(parents, i, b);
        }
    }

    STEP(expect_key(&c, "submitter"));
    {
        const unsigned char *s;
        STEP(read_fixed_bin(&c, PUBKEY_LEN, &s));
        submitter = PyBytes_FromStringAndSize((const char *)s, PUBKEY_LEN);
        if (submitter == NULL) { r = PY_ERROR; goto done; }
    }

    STEP(expect_key(&c, "ts"));
    STEP(read_uint(&c, &ts));

    STEP(expect_key(&c, "v"));
    STEP(read_uint(&c, &v));
    if (v != 1) { r = NOT_HANDLED; goto done; }
    if (c.p != c.end) { r = NOT_HANDLED; goto done; }  /* trailing bytes */
#undef STEP

    nonce_o = PyLong_FromUnsignedLongLong(nonce);
    ts_o = PyLong_FromUnsignedLongLong(ts);
    if (nonce_o == NULL || ts_o == NULL) { r = PY_ERROR; goto done; }
    result = PyTuple_Pack(8, chain, submitter, nonce_o, ts_o, kind, origin, body, parents);
    if (result == NULL) r = PY_ERROR;

done:
    Py_XDECREF(body); Py_XDECREF(chain); Py_XDECREF(kind); Py_XDECREF(origin);
    Py_XDECREF(parents); Py_XDECREF(submitter); Py_XDECREF(nonce_o); Py_XDECREF(ts_o);
    if (r == PY_ERROR) { Py_XDECREF(result); return NULL; }
    if (r) Py_RETURN_NONE;
    return result;
}

/*
 * verify_ed25519(verify_detached, domain, items) -> list[bool]
 *
 * ``verify_detached`` is the address of libsodium's
 * crypto_sign_verify_detached(sig, m, mlen, pk) in the library PyNaCl
 * loaded (ledger/crypto.py looks it up), so the checks are exactly PyNaCl's.
 * ``items`` is a list of (public_key, message, signature) bytes; the message
 * signed is ``domain + message``.  The GIL is released once for the whole
 * list, not once per signature: a verify thread that needs the GIL back
 * after each check waits behind the event loop (up to the 5 ms switch
 * interval each time when the loop is busy).
 */
typedef int (*verify_detached_fn)(const unsigned char *sig, const unsigned char *m,
                                  unsigned long long mlen, const unsigned char *pk);

static PyObject *verify_ed25519(PyObject *self, PyObject *args) {
    unsigned long long address;
    Py_buffer domain;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "Ky*O!:verify_ed25519", &address, &domain, &PyList_Type, &items))
        return NULL;
    if (address == 0) {
        PyBuffer_Release(&domain);
        PyErr_SetString(PyExc_ValueError, "no verify function");
        return NULL;
    }
    verify_detached_fn verify = (verify_detached_fn)(uintptr_t)address;
    /* A private copy of the list: the caller's list may change while the
     * GIL is released, and the copy holds a reference to every item. */
    PyObject *held = PyList_GetSlice(items, 0, PyList_GET_SIZE(items));
    if (held == NULL) { PyBuffer_Release(&domain); return NULL; }
    Py_ssize_t n = PyList_GET_SIZE(held);
    PyObject *result = NULL;
    const unsigned char **pks = NULL, **msgs = NULL, **sigs = NULL;
    Py_ssize_t *lens = NULL;
    unsigned char *ok = NULL, *buf = NULL;
    Py_ssize_t longest = 0;

    pks = PyMem_Malloc(sizeof(*pks) * (size_t)(n + 1));
    msgs = PyMem_Malloc(sizeof(*msgs) * (size_t)(n + 1));
    sigs = PyMem_Malloc(sizeof(*sigs) * (size_t)(n + 1));
    lens = PyMem_Malloc(sizeof(*lens) * (size_t)(n + 1));
    ok = PyMem_Malloc((size_t)(n + 1));
    if (!pks || !msgs || !sigs || !lens || !ok) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(held, i);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 3) {
            PyErr_SetString(PyExc_TypeError, "items are (public_key, message, signature) tuples");
            goto done;
        }
        PyObject *pk = PyTuple_GET_ITEM(t, 0), *m = PyTuple_GET_ITEM(t, 1), *s = PyTuple_GET_ITEM(t, 2);
        if (!PyBytes_CheckExact(pk) || !PyBytes_CheckExact(m) || !PyBytes_CheckExact(s)) {
            PyErr_SetString(PyExc_TypeError, "public key, message and signature must be bytes");
            goto done;
        }
        /* A wrong length is a bad signature, as in ledger.crypto.verify_signature. */
        pks[i] = PyBytes_GET_SIZE(pk) == PUBKEY_LEN && PyBytes_GET_SIZE(s) == SIG_LEN
                     ? (const unsigned char *)PyBytes_AS_STRING(pk) : NULL;
        sigs[i] = (const unsigned char *)PyBytes_AS_STRING(s);
        msgs[i] = (const unsigned char *)PyBytes_AS_STRING(m);
        lens[i] = PyBytes_GET_SIZE(m);
        if (lens[i] > longest) longest = lens[i];
    }
    buf = PyMem_Malloc((size_t)(domain.len + longest + 1));
    if (buf == NULL) { PyErr_NoMemory(); goto done; }
    memcpy(buf, domain.buf, (size_t)domain.len);

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pks[i] == NULL) { ok[i] = 0; continue; }
        memcpy(buf + domain.len, msgs[i], (size_t)lens[i]);
        ok[i] = verify(sigs[i], buf, (unsigned long long)(domain.len + lens[i]), pks[i]) == 0;
    }
    Py_END_ALLOW_THREADS

    result = PyList_New(n);
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = ok[i] ? Py_True : Py_False;
        Py_INCREF(b);
        PyList_SET_ITEM(result, i, b);
    }
done:
    PyMem_Free(pks); PyMem_Free(msgs); PyMem_Free(sigs); PyMem_Free(lens);
    PyMem_Free(ok); PyMem_Free(buf);
    Py_DECREF(held);
    PyBuffer_Release(&domain);
    return result;
}

static PyMethodDef native_methods[] = {
    {"decode_record", decode_record, METH_O,
     "decode_record(record_bytes) -> (chain, submitter, nonce, ts, kind, origin, body, parents) | None"},
    {"verify_ed25519", verify_ed25519, METH_VARARGS,
     "verify_ed25519(verify_detached_address, domain, [(pk, message, sig)]) -> list[bool]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "ledger._native",
    "C accelerators for ledger.records and ledger.crypto (see ledger/native.py).",
    -1, native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
