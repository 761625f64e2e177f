/*
 * Signature batches for ledger.crypto.verify_many (see _native.c for the
 * module).
 *
 *   set_sodium(verify_detached)
 *       the address of libsodium's crypto_sign_verify_detached in the copy
 *       of libsodium PyNaCl loaded and initialised (ledger/native.py looks
 *       it up): the very function PyNaCl's VerifyKey.verify ends in.
 *   verify_ed25519(domain, items) -> list[bool]
 *       for each (public_key, message, signature): does the signature sign
 *       domain + message?  libsodium decides every one; this loop only
 *       spares the Python call per signature.  The GIL is released once
 *       for the whole list.
 *
 * No curve arithmetic lives here: the trust path is libsodium's.
 *
 * Releasing the GIL once per list matters: a verify thread that takes the
 * GIL back after each check waits behind a busy event loop (up to the 5 ms
 * switch interval) each time.
 */
#include "_native.h"

typedef int (*verify_detached_fn)(const unsigned char *sig, const unsigned char *m,
                                  unsigned long long mlen, const unsigned char *pk);

static verify_detached_fn verify_detached;

PyObject *native_set_sodium(PyObject *self, PyObject *args) {
    unsigned long long verify;
    if (!PyArg_ParseTuple(args, "K:set_sodium", &verify)) return NULL;
    if (!verify) {
        PyErr_SetString(PyExc_ValueError, "set_sodium() needs a function address");
        return NULL;
    }
    verify_detached = (verify_detached_fn)(uintptr_t)verify;
    Py_RETURN_NONE;
}

PyObject *native_verify_ed25519(PyObject *self, PyObject *args) {
    Py_buffer domain;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "y*O!:verify_ed25519", &domain, &PyList_Type, &items))
        return NULL;
    if (verify_detached == NULL) {
        PyBuffer_Release(&domain);
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_sodium() first");
        return NULL;
    }
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

    size_t slots = (size_t)n + 1;
    pks = PyMem_Malloc(sizeof(*pks) * slots);
    msgs = PyMem_Malloc(sizeof(*msgs) * slots);
    sigs = PyMem_Malloc(sizeof(*sigs) * slots);
    lens = PyMem_Malloc(sizeof(*lens) * slots);
    ok = PyMem_Malloc(slots);
    if (!pks || !msgs || !sigs || !lens || !ok) {
        PyErr_NoMemory();
        goto done;
    }
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
        int sized = PyBytes_GET_SIZE(pk) == PUBKEY_LEN && PyBytes_GET_SIZE(s) == SIG_LEN;
        pks[i] = sized ? (const unsigned char *)PyBytes_AS_STRING(pk) : NULL;
        sigs[i] = (const unsigned char *)PyBytes_AS_STRING(s);
        msgs[i] = (const unsigned char *)PyBytes_AS_STRING(m);
        lens[i] = PyBytes_GET_SIZE(m);
        if (lens[i] > longest) longest = lens[i];
    }
    /* Room for domain || message, the bytes libsodium checks. */
    buf = PyMem_Malloc((size_t)(domain.len + longest + 1));
    if (buf == NULL) { PyErr_NoMemory(); goto done; }

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        ok[i] = 0;
        if (pks[i] == NULL) continue;
        memcpy(buf, domain.buf, (size_t)domain.len);
        memcpy(buf + domain.len, msgs[i], (size_t)lens[i]);
        ok[i] = verify_detached(sigs[i], buf, (unsigned long long)(domain.len + lens[i]),
                                pks[i]) == 0;
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
    PyMem_Free(pks); PyMem_Free(msgs); PyMem_Free(sigs);
    PyMem_Free(lens); PyMem_Free(ok); PyMem_Free(buf);
    Py_DECREF(held);
    PyBuffer_Release(&domain);
    return result;
}
