/*
 * ledger._native: C versions of the per-record hot spots of a node.
 *
 *   decode_record(b)   the fields of a canonical, well-formed record, or None
 *   decode_envelope(b) the ledger.records.Envelope of a canonical envelope, or None
 *   pair_up(nodes)     RFC 9162 interior nodes of consecutive pairs of hashes
 *   sha256(data)       H, with OpenSSL's own SHA-256 code (ledger.encoding.H)
 *   verify_ed25519(f, domain, items)   many signature checks, GIL released once
 *
 * Files: _native_decode.c (the decoders), this one (hashing, signatures,
 * the module), _native.h (what they share).
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
 * verify_ed25519(verify_detached, domain, items) -> list[bool]
 *
 * ``verify_detached`` is the address of libsodium's
 * crypto_sign_verify_detached(sig, m, mlen, pk) in the library PyNaCl
 * loaded (ledger/native.py looks it up), so the checks are exactly PyNaCl's.
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
    {"set_classes", native_set_classes, METH_VARARGS,
     "set_classes(Record, Envelope): the classes decode_envelope builds"},
    {"pair_up", pair_up, METH_O,
     "pair_up(nodes) -> [H(0x01 || nodes[2i] || nodes[2i+1])]: RFC 9162 interior nodes"},
    {"decode_envelope", native_decode_envelope, METH_O,
     "decode_envelope(envelope_bytes) -> Envelope | None"},
    {"decode_record", native_decode_record, METH_O,
     "decode_record(record_bytes) -> (chain, submitter, nonce, ts, kind, origin, body, parents) | None"},
    {"verify_ed25519", verify_ed25519, METH_VARARGS,
     "verify_ed25519(verify_detached_address, domain, [(pk, message, sig)]) -> list[bool]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "ledger._native",
    "C accelerators for ledger.records, ledger.crypto, ledger.encoding and ledger.merkle "
    "(see ledger/native.py).",
    -1, native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }

