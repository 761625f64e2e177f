/*
 * ledger._native, part 3: canonical batch envelopes (PROTOCOL section 2,
 * "Batch envelopes"), the C version of ledger.batch.canonical_batch_parts
 * with the objects ledger.records._canonical_batch_envelope builds.
 *
 *   canonical({"batch": {"index": i, "path": [h, ...], "size": n},
 *              "record": r, "sig": s})
 *
 * byte for byte: fixed key strings; index and size as the shortest unsigned
 * integers (below 2^16 here: a size is at most MAX_BATCH_SIZE); 1 to
 * MAX_PATH_LEN path entries of bin 8 with 32 bytes; the record as bin 8 or
 * bin 16; a 64-byte bin 8 signature; nothing after it.  Anything else
 * answers None and ledger/records.py decides, as for the other decoders
 * (tests/test_native_batch.py holds this one to the Python reader).
 */
#include "_native.h"

#define MIN_BATCH_SIZE 2
#define MAX_BATCH_SIZE 4096
#define MAX_PATH_LEN 12 /* (MAX_BATCH_SIZE - 1).bit_length() */
#define HASH_LEN 32

static PyObject *batched_cls, *position_cls;
static PyObject *s_index, *s_size, *s_path, *s_record, *s_sig, *s_envelope_bytes, *s_leaf_hash,
    *s_batch;

PyObject *native_set_batch_classes(PyObject *self, PyObject *args) {
    PyObject *ec, *pc;
    if (!PyArg_ParseTuple(args, "O!O!:set_batch_classes", &PyType_Type, &ec, &PyType_Type, &pc))
        return NULL;
#define INTERN(var, text) if (var == NULL && (var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_index, "index"); INTERN(s_size, "size"); INTERN(s_path, "path");
    INTERN(s_record, "record"); INTERN(s_sig, "sig"); INTERN(s_envelope_bytes, "envelope_bytes");
    INTERN(s_leaf_hash, "leaf_hash"); INTERN(s_batch, "batch");
#undef INTERN
    Py_INCREF(ec); Py_INCREF(pc);
    Py_XSETREF(batched_cls, ec);
    Py_XSETREF(position_cls, pc);
    Py_RETURN_NONE;
}

/* A canonical unsigned integer below 2^16 at *p (within end): its value,
 * *p moved past it; -1 if the bytes are anything else. */
static long read_uint16(const unsigned char **p, const unsigned char *end) {
    const unsigned char *q = *p;
    if (q >= end) return -1;
    if (q[0] < 0x80) { *p = q + 1; return q[0]; }
    if (q[0] == 0xcc) {
        if (end - q < 2 || q[1] < 0x80) return -1;
        *p = q + 2;
        return q[1];
    }
    if (q[0] == 0xcd) {
        if (end - q < 3) return -1;
        long v = ((long)q[1] << 8) | q[2];
        if (v <= 0xff) return -1;
        *p = q + 3;
        return v;
    }
    return -1;
}

/* Whether [*p, end) starts with the n bytes of key; *p moved past them. */
static int skip(const unsigned char **p, const unsigned char *end, const char *key, size_t n) {
    if ((size_t)(end - *p) < n || memcmp(*p, key, n) != 0) return 0;
    *p += n;
    return 1;
}

/* native_decode_envelope's answer for bytes that begin with a map of three:
 * a new BatchedEnvelope, None (a new reference) or NULL with an exception. */
PyObject *native_decode_batch_envelope(PyObject *arg) {
    if (batched_cls == NULL) Py_RETURN_NONE;  /* set_batch_classes() not called */
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
    const unsigned char *p = data, *end = data + size;
    if (size > MAX_ENVELOPE_BYTES) Py_RETURN_NONE;
    if (!skip(&p, end, "\x83\xa5" "batch" "\x83\xa5" "index", 14)) Py_RETURN_NONE;
    long index = read_uint16(&p, end);
    if (index < 0 || !skip(&p, end, "\xa4" "path", 5) || p >= end) Py_RETURN_NONE;
    if (*p < 0x91 || *p > 0x90 + MAX_PATH_LEN) Py_RETURN_NONE;
    int count = *p++ - 0x90;
    const unsigned char *path_at = p;
    for (int i = 0; i < count; i++) {
        if (end - p < 2 + HASH_LEN || p[0] != 0xc4 || p[1] != HASH_LEN) Py_RETURN_NONE;
        p += 2 + HASH_LEN;
    }
    if (!skip(&p, end, "\xa4" "size", 5)) Py_RETURN_NONE;
    long batch_size = read_uint16(&p, end);
    if (batch_size < MIN_BATCH_SIZE || batch_size > MAX_BATCH_SIZE || index >= batch_size)
        Py_RETURN_NONE;
    if (!skip(&p, end, "\xa6" "record", 7) || end - p < 2) Py_RETURN_NONE;
    Py_ssize_t n;
    if (p[0] == 0xc4) { n = p[1]; p += 2; }
    else if (p[0] == 0xc5 && end - p >= 3) {
        n = ((Py_ssize_t)p[1] << 8) | p[2];
        if (n <= 0xff) Py_RETURN_NONE;
        p += 3;
    } else Py_RETURN_NONE;
    const unsigned char *record_at = p;
    /* the record, then exactly the signature */
    if (end - p != n + 6 + SIG_LEN) Py_RETURN_NONE;
    p += n;
    if (memcmp(p, "\xa3" "sig" "\xc4\x40", 6) != 0) Py_RETURN_NONE;

    PyObject *record = native_record_object(record_at, n);
    if (record == NULL || record == Py_None) return record;
    PyObject *path = NULL, *position = NULL, *sig = NULL, *leaf = NULL, *envelope = NULL;
    PyObject *index_obj = NULL, *size_obj = NULL;
    path = PyTuple_New(count);
    if (path == NULL) goto done;
    for (int i = 0; i < count; i++) {
        PyObject *h = PyBytes_FromStringAndSize(
            (const char *)path_at + i * (2 + HASH_LEN) + 2, HASH_LEN);
        if (h == NULL) goto done;
        PyTuple_SET_ITEM(path, i, h);
    }
    index_obj = PyLong_FromLong(index);
    size_obj = PyLong_FromLong(batch_size);
    if (index_obj == NULL || size_obj == NULL) goto done;
    {
        PyObject *names[] = {s_index, s_size, s_path};
        PyObject *values[] = {index_obj, size_obj, path};
        position = native_new_instance(position_cls, names, values, 3);
        if (position == NULL) goto done;
    }
    sig = PyBytes_FromStringAndSize((const char *)end - SIG_LEN, SIG_LEN);
    if (sig == NULL) goto done;
    leaf = native_sha256_bytes(0, data, (size_t)size);
    if (leaf == NULL) goto done;
    {
        PyObject *names[] = {s_record, s_sig, s_envelope_bytes, s_leaf_hash, s_batch};
        PyObject *values[] = {record, sig, arg, leaf, position};
        envelope = native_new_instance(batched_cls, names, values, 5);
    }
done:
    Py_XDECREF(record); Py_XDECREF(path); Py_XDECREF(position); Py_XDECREF(sig);
    Py_XDECREF(leaf); Py_XDECREF(index_obj); Py_XDECREF(size_obj);
    return envelope;
}
