/*
 * ledger._native, part 1: canonical records and envelopes (see _native.c).
 *
 * Canonical MessagePack (PROTOCOL section 1) is what msgpack-python's packer
 * writes for a normalised value: shortest integer, string, binary, array
 * and map headers; str for text and bin for bytes; no floats, no extension
 * types; map keys are str in ascending order of their UTF-8 bytes.  These
 * decoders answer None for anything they are not sure about, and
 * ledger/records.py's Python decoder then decides and names the error.
 */
#include "_native.h"

/* Deeper structures are legal up to ledger.encoding._MAX_DEPTH (32) but
 * never seen in practice: the Python path handles them. */
#define MAX_DEPTH 16
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

/* The next len bytes, as the payload of a str or bin. */
static int take(cursor *c, Py_ssize_t len, const unsigned char **s) {
    if (need(c, len)) return NOT_HANDLED;
    *s = c->p;
    c->p += len;
    return 0;
}

/* A str or bin with a 1-, 2- or 4-byte length (form 0, 1, 2), each form
 * only for lengths the shorter one cannot hold (form 0 from min8). */
static int read_sized(cursor *c, int form, Py_ssize_t min8, const unsigned char **s,
                      Py_ssize_t *len) {
    static const int width[] = {1, 2, 4};
    Py_ssize_t min = form == 0 ? min8 : form == 1 ? 0x100 : 0x10000;
    int r = read_len(c, width[form], min, len);
    return r ? r : take(c, *len, s);
}

/* A str's UTF-8 bytes: fixstr, str 8 (from 32 bytes), str 16, str 32. */
static int read_str_raw(cursor *c, unsigned char tag, const unsigned char **s, Py_ssize_t *len) {
    if (tag >= 0xa0 && tag <= 0xbf) {
        *len = tag & 0x1f;
        return take(c, *len, s);
    }
    if (tag >= 0xd9 && tag <= 0xdb) return read_sized(c, tag - 0xd9, 32, s, len);
    return NOT_HANDLED;
}

/* A bin's bytes: bin 8, bin 16, bin 32. */
static int read_bin_raw(cursor *c, unsigned char tag, const unsigned char **s, Py_ssize_t *len) {
    if (tag >= 0xc4 && tag <= 0xc6) return read_sized(c, tag - 0xc4, 0, s, len);
    return NOT_HANDLED;
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

/* A map or array header (is_kind says which) of at most max entries. */
static int read_header(cursor *c, int (*is_kind)(unsigned char), Py_ssize_t max, Py_ssize_t *n) {
    if (need(c, 1)) return NOT_HANDLED;
    unsigned char tag = *c->p++;
    if (!is_kind(tag)) return NOT_HANDLED;
    int r = read_container_len(c, tag, n);
    if (r) return r;
    return *n > max ? NOT_HANDLED : 0;
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
        /* Keys repeat from record to record ("amount", "system"): one
         * shared str each instead of one per record (interned strings are
         * freed with their last reference in 3.11, so this holds nothing). */
        if (klen <= 32) PyUnicode_InternInPlace(&key);
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
typedef struct {
    PyObject *chain, *submitter, *nonce, *ts, *kind, *origin, *body, *parents;
} record_fields;

static void clear_fields(record_fields *f) {
    Py_CLEAR(f->chain); Py_CLEAR(f->submitter); Py_CLEAR(f->nonce); Py_CLEAR(f->ts);
    Py_CLEAR(f->kind); Py_CLEAR(f->origin); Py_CLEAR(f->body); Py_CLEAR(f->parents);
}

/* The fields of the record in [p, end): 0, NOT_HANDLED or PY_ERROR (on
 * anything but 0 the fields are cleared). */
static int parse_record(const unsigned char *p, const unsigned char *end, record_fields *f) {
    cursor c = {p, end};
    int r = 0;
    uint64_t nonce, ts, v;
    Py_ssize_t n;
    memset(f, 0, sizeof(*f));

#define STEP(x) do { if ((r = (x))) goto done; } while (0)
    STEP(need(&c, 1));
    if (*c.p++ != 0x89) { r = NOT_HANDLED; goto done; }

    STEP(expect_key(&c, "body"));
    STEP(read_header(&c, is_map_tag, PY_SSIZE_T_MAX, &n));
    if (n > (c.end - c.p) / 2) { r = NOT_HANDLED; goto done; }
    STEP(read_map_body(&c, n, 1, &f->body));

    STEP(expect_key(&c, "chain"));
    STEP(read_text(&c, MAX_CHAIN_CHARS, &f->chain));

    STEP(expect_key(&c, "kind"));
    STEP(read_text(&c, MAX_KIND_CHARS, &f->kind));

    STEP(expect_key(&c, "nonce"));
    STEP(read_uint(&c, &nonce));

    STEP(expect_key(&c, "origin"));
    STEP(read_header(&c, is_map_tag, MAX_ORIGIN_ENTRIES, &n));
    STEP(read_map_body(&c, n, 1, &f->origin));
    {
        PyObject *k, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(f->origin, &pos, &k, &val))
            if (!PyUnicode_CheckExact(val)) { r = NOT_HANDLED; goto done; }
    }

    STEP(expect_key(&c, "parents"));
    STEP(read_header(&c, is_array_tag, MAX_PARENTS, &n));
    {
        const unsigned char *ids[MAX_PARENTS];
        for (Py_ssize_t i = 0; i < n; i++) {
            STEP(read_fixed_bin(&c, ID_LEN, &ids[i]));
            for (Py_ssize_t j = 0; j < i; j++)
                if (memcmp(ids[i], ids[j], ID_LEN) == 0) { r = NOT_HANDLED; goto done; }
        }
        f->parents = PyTuple_New(n);
        if (f->parents == NULL) { r = PY_ERROR; goto done; }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)ids[i], ID_LEN);
            if (b == NULL) { r = PY_ERROR; goto done; }
            PyTuple_SET_ITEM(f->parents, i, b);
        }
    }

    STEP(expect_key(&c, "submitter"));
    {
        const unsigned char *s;
        STEP(read_fixed_bin(&c, PUBKEY_LEN, &s));
        f->submitter = PyBytes_FromStringAndSize((const char *)s, PUBKEY_LEN);
        if (f->submitter == NULL) { r = PY_ERROR; goto done; }
    }

    STEP(expect_key(&c, "ts"));
    STEP(read_uint(&c, &ts));

    STEP(expect_key(&c, "v"));
    STEP(read_uint(&c, &v));
    if (v != 1) { r = NOT_HANDLED; goto done; }
    if (c.p != c.end) { r = NOT_HANDLED; goto done; }  /* trailing bytes */
#undef STEP

    f->nonce = PyLong_FromUnsignedLongLong(nonce);
    f->ts = PyLong_FromUnsignedLongLong(ts);
    if (f->nonce == NULL || f->ts == NULL) r = PY_ERROR;
done:
    if (r) clear_fields(f);
    return r;
}

/*
 * decode_record(record_bytes) ->
 *   (chain, submitter, nonce, ts, kind, origin, body, parents) or None
 *
 * The record map's nine keys in canonical order: body, chain, kind, nonce,
 * origin, parents, submitter, ts, v.  Field rules are those of
 * ledger.records._record_from_map.
 */
PyObject *native_decode_record(PyObject *self, PyObject *arg) {
    if (!PyBytes_CheckExact(arg)) Py_RETURN_NONE;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(arg);
    record_fields f;
    int r = parse_record(p, p + PyBytes_GET_SIZE(arg), &f);
    if (r == PY_ERROR) return NULL;
    if (r) Py_RETURN_NONE;
    PyObject *result = PyTuple_Pack(8, f.chain, f.submitter, f.nonce, f.ts, f.kind, f.origin,
                                    f.body, f.parents);
    clear_fields(&f);
    return result;
}

/* -- whole envelopes, as ledger.records objects --------------------------
 *
 * set_sha256(...) (_native.c) hands over the protocol's H, set_classes(Record,
 * Envelope) the two classes.
 * decode_envelope then builds the same objects ledger.records builds: a
 * Record with its bytes and id, an Envelope with its record, signature,
 * bytes and (computed now: a node needs it for every record) leaf hash,
 * filled in through the instance dict as records._new_record does.
 */
static PyObject *record_cls, *envelope_cls;
static PyObject *s_chain, *s_submitter, *s_nonce, *s_ts, *s_kind, *s_origin, *s_body,
    *s_parents, *s_record_bytes, *s_id, *s_record, *s_sig, *s_envelope_bytes, *s_leaf_hash;

static int intern_names(void) {
#define INTERN(var, text) if (var == NULL && (var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_chain, "chain"); INTERN(s_submitter, "submitter"); INTERN(s_nonce, "nonce");
    INTERN(s_ts, "ts"); INTERN(s_kind, "kind"); INTERN(s_origin, "origin"); INTERN(s_body, "body");
    INTERN(s_parents, "parents"); INTERN(s_record_bytes, "record_bytes"); INTERN(s_id, "id");
    INTERN(s_record, "record"); INTERN(s_sig, "sig"); INTERN(s_envelope_bytes, "envelope_bytes");
    INTERN(s_leaf_hash, "leaf_hash");
#undef INTERN
    return 0;
}


PyObject *native_set_classes(PyObject *self, PyObject *args) {
    PyObject *rc, *ec;
    if (!PyArg_ParseTuple(args, "O!O!:set_classes", &PyType_Type, &rc, &PyType_Type, &ec))
        return NULL;
    if (intern_names() < 0) return NULL;
    Py_INCREF(rc); Py_INCREF(ec);
    Py_XSETREF(record_cls, rc);
    Py_XSETREF(envelope_cls, ec);
    Py_RETURN_NONE;
}

/* A new instance of cls (object.__new__, no __init__) with these attributes,
 * set as object.__setattr__ does (the classes are frozen, slotted dataclasses). */
PyObject *native_new_instance(PyObject *cls, PyObject *const *names, PyObject *const *values, int n) {
    /* what object.__new__(cls) does: the type's tp_new, no arguments */
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *no_args = PyTuple_New(0);
    if (no_args == NULL) return NULL;
    PyObject *obj = tp->tp_new(tp, no_args, NULL);
    Py_DECREF(no_args);
    if (obj == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        if (PyObject_GenericSetAttr(obj, names[i], values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

/* The Record of the canonical record bytes [p, p + n): a new reference,
 * Py_None (a new reference) for bytes the fast path does not handle, NULL
 * with an exception set. */
PyObject *native_record_object(const unsigned char *p, Py_ssize_t n) {
    record_fields f;
    int r = parse_record(p, p + n, &f);
    if (r == PY_ERROR) return NULL;
    if (r) Py_RETURN_NONE;
    PyObject *record_bytes = NULL, *record_id = NULL, *record = NULL;
    record_bytes = PyBytes_FromStringAndSize((const char *)p, n);
    if (record_bytes == NULL) goto done;
    record_id = native_sha256_bytes(-1, p, (size_t)n);
    if (record_id == NULL) goto done;
    {
        PyObject *names[] = {s_chain, s_submitter, s_nonce, s_ts, s_kind, s_origin, s_body,
                             s_parents, s_record_bytes, s_id};
        PyObject *values[] = {f.chain, f.submitter, f.nonce, f.ts, f.kind, f.origin, f.body,
                              f.parents, record_bytes, record_id};
        record = native_new_instance(record_cls, names, values, 10);
    }
done:
    clear_fields(&f);
    Py_XDECREF(record_bytes); Py_XDECREF(record_id);
    return record;
}

PyObject *native_decode_envelope(PyObject *self, PyObject *arg) {
    if (!native_hash_ready()) return NULL;
    if (record_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_classes() first");
        return NULL;
    }
    if (!PyBytes_CheckExact(arg)) Py_RETURN_NONE;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
    if (size > 0 && data[0] == 0x83) return native_decode_batch_envelope(arg);
    /* canonical({"record": r, "sig": s}): map header, "record", r as bin 8
     * or bin 16 (bin 32 cannot fit in 8 KiB), "sig", bin 8 of 64 bytes. */
    static const unsigned char head[] = {0x82, 0xa6, 'r', 'e', 'c', 'o', 'r', 'd'};
    static const unsigned char sig_key[] = {0xa3, 's', 'i', 'g', 0xc4, SIG_LEN};
    if (size < 10 || size > MAX_ENVELOPE_BYTES || memcmp(data, head, sizeof head) != 0)
        Py_RETURN_NONE;
    Py_ssize_t n, start;
    if (data[8] == 0xc4) { n = data[9]; start = 10; }
    else if (data[8] == 0xc5 && size >= 11) {
        n = ((Py_ssize_t)data[9] << 8) | data[10];
        start = 11;
        if (n < 0x100) Py_RETURN_NONE;
    } else Py_RETURN_NONE;
    Py_ssize_t end = start + n;
    if (size != end + (Py_ssize_t)sizeof sig_key + SIG_LEN
        || memcmp(data + end, sig_key, sizeof sig_key) != 0)
        Py_RETURN_NONE;

    PyObject *sig = NULL, *leaf = NULL, *envelope = NULL;
    PyObject *record = native_record_object(data + start, n);
    if (record == NULL || record == Py_None) return record;
    sig = PyBytes_FromStringAndSize((const char *)data + size - SIG_LEN, SIG_LEN);
    if (sig == NULL) goto done;
    leaf = native_sha256_bytes(0, data, (size_t)size);
    if (leaf == NULL) goto done;
    {
        PyObject *names[] = {s_record, s_sig, s_envelope_bytes, s_leaf_hash};
        PyObject *values[] = {record, sig, arg, leaf};
        envelope = native_new_instance(envelope_cls, names, values, 4);
    }
done:
    Py_XDECREF(sig); Py_XDECREF(record); Py_XDECREF(leaf);
    return envelope;
}

