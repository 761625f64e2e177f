/*
 * ledger._native: C versions of the per-record hot spots of a node.
 *
 *   decode_record(b)   the fields of a canonical, well-formed record, or None
 *   decode_envelope(b) the ledger.records.Envelope of a canonical envelope (a
 *                      BatchedEnvelope for a batch envelope), or None
 *   pair_up(nodes)     RFC 9162 interior nodes of consecutive pairs of hashes
 *   shaped_leaves(prefix, shapes, slots, ids)
 *                      leaf hashes of verdict entries stored by shape
 *   sha256(data)       H, with OpenSSL's own SHA-256 code (ledger.encoding.H)
 *   verify_ed25519(domain, items)
 *                      many signature checks by libsodium, GIL released once
 *
 * Files: _native_decode.c (the decoders), _native_batch.c (batch
 * envelopes), _native_verify.c (signature
 * batches, each signature checked by libsodium), this one (hashing, the
 * module) and _native.h (what they share).
 *
 * They are accelerators for ledger/records.py, ledger/crypto.py,
 * ledger/encoding.py and ledger/merkle.py, which stay the reference: the
 * decoders answer None for anything they are not sure about (non-canonical
 * bytes, a wrong type, deep nesting, anything unusual) and the Python paths
 * then decide, and name the error.  So the contract tested in
 * tests/test_native.py is one-sided: whenever a decoder returns a record,
 * the Python decoder returns the same one.
 */
#include "_native.h"

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

PyObject *native_sha256_bytes(int prefix, const void *data, size_t len) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, 32);
    if (out == NULL) return NULL;
    sha256_into(prefix, data, len, (unsigned char *)PyBytes_AS_STRING(out));
    return out;
}

int native_hash_ready(void) {
    if (sha_init == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_sha256() first");
        return 0;
    }
    return 1;
}

/* sha256(data) -> H(data), the protocol's hash (ledger.encoding.H). */
static PyObject *sha256(PyObject *self, PyObject *arg) {
    if (!native_hash_ready()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = native_sha256_bytes(-1, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return out;
}


/*
 * pair_up(nodes) -> the RFC 9162 interior node H(0x01 || left || right) of
 * each consecutive pair of 32-byte hashes; an odd last node is left out
 * (the callers carry it up).  ledger.log._pair_up and ledger.merkle's
 * level fold are the Python versions.
 */
static PyObject *pair_up(PyObject *self, PyObject *nodes) {
    if (!native_hash_ready()) return NULL;
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
        PyObject *parent = native_sha256_bytes(1, both, 64);
        if (parent == NULL) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, parent);
    }
    return out;
}


/*
 * shaped_leaves(prefix, shapes, slots, ids) -> [H(prefix || before || id ||
 * after)] for each record: its shape (before, after) = shapes[slot], slot the
 * big-endian uint16 at 2*i of slots, id the 32 bytes at 32*i of ids.  The
 * Merkle leaves of a block's verdicts without making their bytes
 * (ledger/verdict_pack.py; its Python loop is the reference).
 */
static PyObject *shaped_leaves(PyObject *self, PyObject *args) {
    Py_buffer prefix, slots, ids;
    PyObject *shapes, *out = NULL;
    if (!native_hash_ready()) return NULL;
    if (!PyArg_ParseTuple(args, "y*O!y*y*:shaped_leaves", &prefix, &PyList_Type, &shapes,
                          &slots, &ids))
        return NULL;
    Py_ssize_t n = slots.len / 2, count = PyList_GET_SIZE(shapes);
    if (slots.len % 2 || ids.len != 32 * n) {
        PyErr_SetString(PyExc_ValueError, "shaped_leaves() needs one 2-byte slot and one "
                        "32-byte id per record");
        goto done;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *shape = PyList_GET_ITEM(shapes, k);
        if (!PyTuple_CheckExact(shape) || PyTuple_GET_SIZE(shape) != 2
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(shape, 0))
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(shape, 1))) {
            PyErr_SetString(PyExc_TypeError, "shaped_leaves() takes (before, after) bytes pairs");
            goto done;
        }
    }
    out = PyList_New(n);
    if (out == NULL) goto done;
    const unsigned char *slot = slots.buf, *id = ids.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = ((Py_ssize_t)slot[2 * i] << 8) | slot[2 * i + 1];
        if (s >= count) {
            PyErr_SetString(PyExc_ValueError, "shaped_leaves(): a slot names no shape");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *shape = PyList_GET_ITEM(shapes, s);
        PyObject *before = PyTuple_GET_ITEM(shape, 0), *after = PyTuple_GET_ITEM(shape, 1);
        PyObject *leaf = PyBytes_FromStringAndSize(NULL, 32);
        if (leaf == NULL) { Py_CLEAR(out); goto done; }
        sha_ctx ctx;
        sha_init(&ctx);
        sha_update(&ctx, prefix.buf, (size_t)prefix.len);
        sha_update(&ctx, PyBytes_AS_STRING(before), (size_t)PyBytes_GET_SIZE(before));
        sha_update(&ctx, id + 32 * i, 32);
        sha_update(&ctx, PyBytes_AS_STRING(after), (size_t)PyBytes_GET_SIZE(after));
        sha_final((unsigned char *)PyBytes_AS_STRING(leaf), &ctx);
        PyList_SET_ITEM(out, i, leaf);
    }
done:
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&slots);
    PyBuffer_Release(&ids);
    return out;
}


static PyMethodDef native_methods[] = {
    {"set_sha256", set_sha256, METH_VARARGS,
     "set_sha256(init, update, final): addresses of OpenSSL's SHA256_Init/Update/Final"},
    {"sha256", sha256, METH_O, "sha256(data) -> the 32-byte SHA-256 of data"},
    {"set_classes", native_set_classes, METH_VARARGS,
     "set_classes(Record, Envelope): the classes decode_envelope builds"},
    {"set_batch_classes", native_set_batch_classes, METH_VARARGS,
     "set_batch_classes(BatchedEnvelope, BatchPosition): what decode_envelope builds for batches"},
    {"shaped_leaves", shaped_leaves, METH_VARARGS,
     "shaped_leaves(prefix, shapes, slots, ids) -> the leaf hash of each shaped entry"},
    {"pair_up", pair_up, METH_O,
     "pair_up(nodes) -> [H(0x01 || nodes[2i] || nodes[2i+1])]: RFC 9162 interior nodes"},
    {"decode_envelope", native_decode_envelope, METH_O,
     "decode_envelope(envelope_bytes) -> Envelope | None"},
    {"decode_record", native_decode_record, METH_O,
     "decode_record(record_bytes) -> (chain, submitter, nonce, ts, kind, origin, body, parents) | None"},
    {"set_sodium", native_set_sodium, METH_VARARGS,
     "set_sodium(verify_detached): libsodium's crypto_sign_verify_detached"},
    {"verify_ed25519", native_verify_ed25519, METH_VARARGS,
     "verify_ed25519(domain, [(pk, message, sig)]) -> list[bool], each checked by libsodium"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "ledger._native",
    "C accelerators for ledger.records, ledger.crypto, ledger.encoding and ledger.merkle "
    "(see ledger/native.py).",
    -1, native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }

