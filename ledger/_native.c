/*
 * ledger._native: C versions of the two per-record hot spots of a node.
 *
 *   decode_record(b)   the fields of a canonical, well-formed record, or None
 *   decode_envelope(b) the ledger.records.Envelope of a canonical envelope, or None
 *   pair_up(nodes)     RFC 9162 interior nodes of consecutive pairs of hashes
 *   sha256(data)       H, with OpenSSL's own SHA-256 code (ledger.encoding.H)
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
static PyObject *decode_record(PyObject *self, PyObject *arg) {
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
 * set_sha256(...) hands over the protocol's H (below), set_classes(Record,
 * Envelope) the two classes.
 * decode_envelope then builds the same objects ledger.records builds: a
 * Record with its bytes and id, an Envelope with its record, signature,
 * bytes and (computed now: a node needs it for every record) leaf hash,
 * filled in through the instance dict as records._new_record does.
 */
static PyObject *record_cls, *envelope_cls;
static PyObject *s_chain, *s_submitter, *s_nonce, *s_ts, *s_kind, *s_origin, *s_body,
    *s_parents, *s_record_bytes, *s_id, *s_record, *s_sig, *s_envelope_bytes, *s_leaf_hash;

#define MAX_ENVELOPE_BYTES 8192

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

/* OpenSSL's SHA-256 (SHA256_Init/Update/Final of the libcrypto Python's
 * hashlib loaded; ledger/native.py looks them up): the code hashlib runs,
 * without the EVP layer's context allocation and method lookup per call,
 * which cost more than hashing a 65-byte Merkle node. */
typedef int (*sha_init_fn)(void *ctx);
typedef int (*sha_update_fn)(void *ctx, const void *data, size_t len);
typedef int (*sha_final_fn)(unsigned char *md, void *ctx);
static sha_init_fn sha_init;
static sha_update_fn sha_update;
static sha_final_fn sha_final;
/* SHA256_CTX is 112 bytes in OpenSSL 1.1 and 3.x; room to spare. */
typedef union { unsigned char bytes[512]; uint64_t align; } sha_ctx;

static PyObject *set_sha256(PyObject *self, PyObject *args) {
    unsigned long long init, update, final;
    if (!PyArg_ParseTuple(args, "KKK:set_sha256", &init, &update, &final)) return NULL;
    if (!init || !update || !final) {
        PyErr_SetString(PyExc_ValueError, "set_sha256() needs three function addresses");
        return NULL;
    }
    if (intern_names() < 0) return NULL;
    sha_init = (sha_init_fn)(uintptr_t)init;
    sha_update = (sha_update_fn)(uintptr_t)update;
    sha_final = (sha_final_fn)(uintptr_t)final;
    Py_RETURN_NONE;
}

/* H(prefix || data), prefix of 0 or 1 byte, into md. */
static void sha256_into(int prefix, const void *data, size_t len, unsigned char *md) {
    sha_ctx ctx;
    sha_init(&ctx);
    if (prefix >= 0) {
        unsigned char p = (unsigned char)prefix;
        sha_update(&ctx, &p, 1);
    }
    sha_update(&ctx, data, len);
    sha_final(md, &ctx);
}

static PyObject *sha256_bytes(int prefix, const void *data, size_t len) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, 32);
    if (out == NULL) return NULL;
    sha256_into(prefix, data, len, (unsigned char *)PyBytes_AS_STRING(out));
    return out;
}

static int ready(void) {
    if (sha_init == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_sha256() first");
        return 0;
    }
    return 1;
}

/* sha256(data) -> H(data), the protocol's hash (ledger.encoding.H). */
static PyObject *sha256(PyObject *self, PyObject *arg) {
    if (!ready()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = sha256_bytes(-1, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *set_classes(PyObject *self, PyObject *args) {
    PyObject *rc, *ec;
    if (!PyArg_ParseTuple(args, "O!O!:set_classes", &PyType_Type, &rc, &PyType_Type, &ec))
        return NULL;
    if (intern_names() < 0) return NULL;
    Py_INCREF(rc); Py_INCREF(ec);
    Py_XSETREF(record_cls, rc);
    Py_XSETREF(envelope_cls, ec);
    Py_RETURN_NONE;
}

/* A new instance of cls (object.__new__, no __init__) with these attributes. */
static PyObject *new_instance(PyObject *cls, PyObject *const *names, PyObject *const *values, int n) {
    /* what object.__new__(cls) does: the type's tp_new, no arguments */
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *no_args = PyTuple_New(0);
    if (no_args == NULL) return NULL;
    PyObject *obj = tp->tp_new(tp, no_args, NULL);
    Py_DECREF(no_args);
    if (obj == NULL) return NULL;
    PyObject *dict = PyObject_GenericGetDict(obj, NULL);
    if (dict == NULL) { Py_DECREF(obj); return NULL; }
    for (int i = 0; i < n; i++) {
        if (PyDict_SetItem(dict, names[i], values[i]) < 0) {
            Py_DECREF(dict); Py_DECREF(obj); return NULL;
        }
    }
    Py_DECREF(dict);
    return obj;
}

static PyObject *decode_envelope(PyObject *self, PyObject *arg) {
    if (!ready()) return NULL;
    if (record_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_classes() first");
        return NULL;
    }
    if (!PyBytes_CheckExact(arg)) Py_RETURN_NONE;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
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

    record_fields f;
    int r = parse_record(data + start, data + end, &f);
    if (r == PY_ERROR) return NULL;
    if (r) Py_RETURN_NONE;

    PyObject *record_bytes = NULL, *record_id = NULL, *sig = NULL, *record = NULL;
    PyObject *leaf = NULL, *envelope = NULL;
    record_bytes = PyBytes_FromStringAndSize((const char *)data + start, n);
    if (record_bytes == NULL) goto done;
    record_id = sha256_bytes(-1, data + start, (size_t)n);
    if (record_id == NULL) goto done;
    {
        PyObject *names[] = {s_chain, s_submitter, s_nonce, s_ts, s_kind, s_origin, s_body,
                             s_parents, s_record_bytes, s_id};
        PyObject *values[] = {f.chain, f.submitter, f.nonce, f.ts, f.kind, f.origin, f.body,
                              f.parents, record_bytes, record_id};
        record = new_instance(record_cls, names, values, 10);
        if (record == NULL) goto done;
    }
    sig = PyBytes_FromStringAndSize((const char *)data + size - SIG_LEN, SIG_LEN);
    if (sig == NULL) goto done;
    leaf = sha256_bytes(0, data, (size_t)size);
    if (leaf == NULL) goto done;
    {
        PyObject *names[] = {s_record, s_sig, s_envelope_bytes, s_leaf_hash};
        PyObject *values[] = {record, sig, arg, leaf};
        envelope = new_instance(envelope_cls, names, values, 4);
    }
done:
    clear_fields(&f);
    Py_XDECREF(record_bytes); Py_XDECREF(record_id); Py_XDECREF(sig); Py_XDECREF(record);
    Py_XDECREF(leaf);
    return envelope;
}

/*
 * pair_up(nodes) -> the RFC 9162 interior node H(0x01 || left || right) of
 * each consecutive pair of 32-byte hashes; an odd last node is left out
 * (the callers carry it up).  ledger.log._pair_up and ledger.merkle's
 * level fold are the Python versions.
 */
static PyObject *pair_up(PyObject *self, PyObject *nodes) {
    if (!ready()) return NULL;
    if (!PyList_CheckExact(nodes)) {
        PyErr_SetString(PyExc_TypeError, "pair_up() takes a list of 32-byte hashes");
        return NULL;
    }
    Py_ssize_t pairs = PyList_GET_SIZE(nodes) / 2;
    PyObject *out = PyList_New(pairs);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < pairs; i++) {
        PyObject *left = PyList_GET_ITEM(nodes, 2 * i), *right = PyList_GET_ITEM(nodes, 2 * i + 1);
        if (!PyBytes_CheckExact(left) || !PyBytes_CheckExact(right)
            || PyBytes_GET_SIZE(left) != 32 || PyBytes_GET_SIZE(right) != 32) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_ValueError, "pair_up() takes 32-byte hashes");
            return NULL;
        }
        unsigned char both[64];
        memcpy(both, PyBytes_AS_STRING(left), 32);
        memcpy(both + 32, PyBytes_AS_STRING(right), 32);
        PyObject *parent = sha256_bytes(1, both, 64);
        if (parent == NULL) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, parent);
    }
    return out;
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
    {"set_sha256", set_sha256, METH_VARARGS,
     "set_sha256(init, update, final): addresses of OpenSSL's SHA256_Init/Update/Final"},
    {"sha256", sha256, METH_O, "sha256(data) -> the 32-byte SHA-256 of data"},
    {"set_classes", set_classes, METH_VARARGS,
     "set_classes(Record, Envelope): the classes decode_envelope builds"},
    {"pair_up", pair_up, METH_O,
     "pair_up(nodes) -> [H(0x01 || nodes[2i] || nodes[2i+1])]: RFC 9162 interior nodes"},
    {"decode_envelope", decode_envelope, METH_O,
     "decode_envelope(envelope_bytes) -> Envelope | None"},
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
