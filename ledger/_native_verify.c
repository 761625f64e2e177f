/*
 * Signature batches for ledger.crypto.verify_many (see _native.c for the
 * module).
 *
 *   set_sodium(verify_detached, is_valid_point, sha512, scalar_reduce)
 *       addresses of libsodium's crypto_sign_verify_detached,
 *       crypto_core_ed25519_is_valid_point, crypto_hash_sha512 and
 *       crypto_core_ed25519_scalar_reduce, in the library PyNaCl loaded
 *       (ledger/native.py looks them up)
 *   ed25519_combine(public_key, s, h) -> encode([s]B - [h]A), for tests
 *   verify_ed25519(domain, items, tables, max_tables) -> list[bool]
 *       for each (public_key, message, signature): does the signature sign
 *       domain + message?  The GIL is released once for the whole list.
 *
 * ``tables`` is the caller's cache, public key -> key table (bytes) or None
 * (libsodium checks that key's signatures); keys not in it are added while
 * it holds fewer than ``max_tables``.  With ``tables`` None every signature
 * goes to libsodium's crypto_sign_verify_detached, the function PyNaCl's
 * VerifyKey.verify ends in.  _native_ed25519.c explains why both paths
 * accept exactly the same signatures.
 *
 * Releasing the GIL once per list matters: a verify thread that takes the
 * GIL back after each check waits behind a busy event loop (up to the 5 ms
 * switch interval) each time.
 */
#include "_native.h"
#include "_native_ed25519.h"

typedef int (*verify_detached_fn)(const unsigned char *sig, const unsigned char *m,
                                  unsigned long long mlen, const unsigned char *pk);
typedef int (*is_valid_point_fn)(const unsigned char *p);
typedef int (*sha512_fn)(unsigned char *out, const unsigned char *in, unsigned long long inlen);
typedef void (*scalar_reduce_fn)(unsigned char *r, const unsigned char *s);

static verify_detached_fn verify_detached;
static is_valid_point_fn is_valid_point;
static sha512_fn sha512;
static scalar_reduce_fn scalar_reduce;

PyObject *native_set_sodium(PyObject *self, PyObject *args) {
    unsigned long long verify, valid, hash, reduce;
    if (!PyArg_ParseTuple(args, "KKKK:set_sodium", &verify, &valid, &hash, &reduce)) return NULL;
    if (!verify || !valid || !hash || !reduce) {
        PyErr_SetString(PyExc_ValueError, "set_sodium() needs four function addresses");
        return NULL;
    }
    if (ed25519_init() != 0) return PyErr_NoMemory();
    verify_detached = (verify_detached_fn)(uintptr_t)verify;
    is_valid_point = (is_valid_point_fn)(uintptr_t)valid;
    sha512 = (sha512_fn)(uintptr_t)hash;
    scalar_reduce = (scalar_reduce_fn)(uintptr_t)reduce;
    Py_RETURN_NONE;
}

/* The cached table of pk (a new reference: bytes, or None for libsodium),
 * building it if the cache has room; NULL with an exception set on error. */
static PyObject *key_table(PyObject *tables, Py_ssize_t max_tables, PyObject *pk) {
    PyObject *table = PyDict_GetItemWithError(tables, pk);
    if (table != NULL) { Py_INCREF(table); return table; }
    if (PyErr_Occurred()) return NULL;
    if (PyDict_GET_SIZE(tables) >= max_tables) Py_RETURN_NONE;
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(pk);
    if (is_valid_point(key) == 1) {
        table = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)ed25519_table_bytes());
        if (table == NULL) return NULL;
        if (ed25519_key_table((unsigned char *)PyBytes_AS_STRING(table), key) != 0) {
            Py_DECREF(table);  /* cannot happen for a valid point: libsodium decides */
            table = Py_None;
            Py_INCREF(table);
        }
    } else {
        /* Torsion, small order, not canonical, not on the curve: libsodium
         * decides these keys' signatures (and rejects all but torsion). */
        table = Py_None;
        Py_INCREF(table);
    }
    if (PyDict_SetItem(tables, pk, table) < 0) { Py_DECREF(table); return NULL; }
    return table;
}

/* libsodium's verdict on sig over domain || message, built in buf. */
static unsigned char libsodium_verify(unsigned char *buf, const Py_buffer *domain,
                                      const unsigned char *message, Py_ssize_t len,
                                      const unsigned char *sig, const unsigned char *pk) {
    memcpy(buf, domain->buf, (size_t)domain->len);
    memcpy(buf + domain->len, message, (size_t)len);
    return verify_detached(sig, buf, (unsigned long long)(domain->len + len), pk) == 0;
}

/* The canonical encoding of the identity point, (x, y) = (0, 1). */
static const unsigned char IDENTITY[32] = {1};

PyObject *native_verify_ed25519(PyObject *self, PyObject *args) {
    Py_buffer domain;
    PyObject *items, *tables;
    Py_ssize_t max_tables;
    if (!PyArg_ParseTuple(args, "y*O!On:verify_ed25519", &domain, &PyList_Type, &items,
                          &tables, &max_tables))
        return NULL;
    if (verify_detached == NULL) {
        PyBuffer_Release(&domain);
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_sodium() first");
        return NULL;
    }
    if (tables != Py_None && !PyDict_CheckExact(tables)) {
        PyBuffer_Release(&domain);
        PyErr_SetString(PyExc_TypeError, "tables must be a dict or None");
        return NULL;
    }
    /* A private copy of the list: the caller's list may change while the
     * GIL is released, and the copy holds a reference to every item. */
    PyObject *held = PyList_GetSlice(items, 0, PyList_GET_SIZE(items));
    if (held == NULL) { PyBuffer_Release(&domain); return NULL; }
    Py_ssize_t n = PyList_GET_SIZE(held);
    PyObject *result = NULL, *used_tables = PyList_New(0);
    const unsigned char **pks = NULL, **msgs = NULL, **sigs = NULL, **tabs = NULL;
    const unsigned char **fast_tabs = NULL, **fast_sigs = NULL;
    unsigned char (*fast_h)[32] = NULL;
    Py_ssize_t *lens = NULL, *fast_index = NULL;
    unsigned char *ok = NULL, *fast_ok = NULL, *buf = NULL;
    void *work = NULL;
    Py_ssize_t longest = 0;
    if (used_tables == NULL) goto done;

    size_t slots = (size_t)n + 1;
    pks = PyMem_Malloc(sizeof(*pks) * slots);
    msgs = PyMem_Malloc(sizeof(*msgs) * slots);
    sigs = PyMem_Malloc(sizeof(*sigs) * slots);
    tabs = PyMem_Malloc(sizeof(*tabs) * slots);
    fast_tabs = PyMem_Malloc(sizeof(*fast_tabs) * slots);
    fast_sigs = PyMem_Malloc(sizeof(*fast_sigs) * slots);
    fast_h = PyMem_Malloc(sizeof(*fast_h) * slots);
    fast_index = PyMem_Malloc(sizeof(*fast_index) * slots);
    lens = PyMem_Malloc(sizeof(*lens) * slots);
    ok = PyMem_Malloc(slots);
    fast_ok = PyMem_Malloc(slots);
    work = PyMem_Malloc(ed25519_work_bytes(slots));
    if (!pks || !msgs || !sigs || !tabs || !fast_tabs || !fast_sigs || !fast_h || !fast_index
        || !lens || !ok || !fast_ok || !work) {
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
        tabs[i] = NULL;
        if (lens[i] > longest) longest = lens[i];
        if (sized && tables != Py_None) {
            PyObject *table = key_table(tables, max_tables, pk);
            if (table == NULL) goto done;
            /* The list keeps the table alive while the GIL is released. */
            int appended = table != Py_None ? PyList_Append(used_tables, table) : 0;
            if (table != Py_None) tabs[i] = (const unsigned char *)PyBytes_AS_STRING(table);
            Py_DECREF(table);
            if (appended < 0) goto done;
        }
    }
    /* Room for R || A || domain || message (the hash input) and for
     * domain || message (libsodium's). */
    buf = PyMem_Malloc((size_t)(64 + domain.len + longest + 1));
    if (buf == NULL) { PyErr_NoMemory(); goto done; }

    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t fast = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        ok[i] = 0;
        if (pks[i] == NULL) continue;
        if (tabs[i] == NULL) {
            ok[i] = libsodium_verify(buf, &domain, msgs[i], lens[i], sigs[i], pks[i]);
            continue;
        }
        /* libsodium's checks on (R, s) that the table path does not make by itself. */
        if (!ed25519_scalar_is_canonical(sigs[i] + 32) || memcmp(sigs[i], IDENTITY, 32) == 0)
            continue;
        unsigned char digest[64];
        memcpy(buf, sigs[i], 32);
        memcpy(buf + 32, pks[i], 32);
        memcpy(buf + 64, domain.buf, (size_t)domain.len);
        memcpy(buf + 64 + domain.len, msgs[i], (size_t)lens[i]);
        sha512(digest, buf, (unsigned long long)(64 + domain.len + lens[i]));
        scalar_reduce(fast_h[fast], digest);
        fast_tabs[fast] = tabs[i];
        fast_sigs[fast] = sigs[i];
        fast_index[fast] = i;
        fast++;
    }
    if (ed25519_verify_tables((size_t)fast, fast_tabs, fast_sigs,
                              (const unsigned char (*)[32])fast_h, fast_ok, work) == 0) {
        for (Py_ssize_t k = 0; k < fast; k++) ok[fast_index[k]] = fast_ok[k];
    } else {
        /* Unreachable for points on the curve; libsodium decides if it ever happens. */
        for (Py_ssize_t k = 0; k < fast; k++) {
            Py_ssize_t i = fast_index[k];
            ok[i] = libsodium_verify(buf, &domain, msgs[i], lens[i], sigs[i], pks[i]);
        }
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
    PyMem_Free(pks); PyMem_Free(msgs); PyMem_Free(sigs); PyMem_Free(tabs);
    PyMem_Free(fast_tabs); PyMem_Free(fast_sigs); PyMem_Free(fast_h); PyMem_Free(fast_index);
    PyMem_Free(lens); PyMem_Free(ok); PyMem_Free(fast_ok); PyMem_Free(work); PyMem_Free(buf);
    Py_XDECREF(used_tables);
    Py_DECREF(held);
    PyBuffer_Release(&domain);
    return result;
}

PyObject *native_ed25519_combine(PyObject *self, PyObject *args) {
    const unsigned char *pk, *s, *h;
    Py_ssize_t pk_len, s_len, h_len;
    if (!PyArg_ParseTuple(args, "y#y#y#:ed25519_combine", &pk, &pk_len, &s, &s_len, &h, &h_len))
        return NULL;
    if (is_valid_point == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ledger._native: set_sodium() first");
        return NULL;
    }
    if (pk_len != 32 || s_len != 32 || h_len != 32 || (s[31] | h[31]) >= 0x20) {
        PyErr_SetString(PyExc_ValueError, "a 32-byte key and two scalars below 2^253");
        return NULL;
    }
    if (is_valid_point(pk) != 1) {
        PyErr_SetString(PyExc_ValueError, "the key has no table (libsodium's is_valid_point says no)");
        return NULL;
    }
    unsigned char *table = PyMem_Malloc(ed25519_table_bytes());
    if (table == NULL) return PyErr_NoMemory();
    PyObject *out = NULL;
    if (ed25519_key_table(table, pk) != 0) {
        PyErr_SetString(PyExc_ValueError, "the key does not decode");
    } else {
        unsigned char point[32];
        ed25519_combine(point, table, s, h);
        out = PyBytes_FromStringAndSize((const char *)point, 32);
    }
    PyMem_Free(table);
    return out;
}
