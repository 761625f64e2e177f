/* Declarations shared by the files of ledger._native (see _native.c). */
#ifndef LEDGER_NATIVE_H
#define LEDGER_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PUBKEY_LEN 32
#define SIG_LEN 64
#define ID_LEN 32

/* _native.c: H(prefix || data) as a new bytes object, prefix a byte or -1
 * for none; and whether set_sha256() was called (0: RuntimeError set). */
PyObject *native_sha256_bytes(int prefix, const void *data, size_t len);
int native_hash_ready(void);

/* _native_decode.c: canonical records and envelopes. */
PyObject *native_decode_record(PyObject *self, PyObject *arg);
PyObject *native_decode_envelope(PyObject *self, PyObject *arg);
PyObject *native_set_classes(PyObject *self, PyObject *args);
/* The largest envelope a node admits (ledger.records.MAX_ENVELOPE_BYTES). */
#define MAX_ENVELOPE_BYTES 8192
/* What _native_batch.c builds on: a new instance of a frozen, slotted class
 * without __init__, and a canonical record's Record (Py_None if the fast
 * path does not handle the bytes). */
PyObject *native_new_instance(PyObject *cls, PyObject *const *names, PyObject *const *values, int n);
PyObject *native_record_object(const unsigned char *p, Py_ssize_t n);

/* _native_batch.c: canonical batch envelopes. */
PyObject *native_set_batch_classes(PyObject *self, PyObject *args);
PyObject *native_decode_batch_envelope(PyObject *arg);

/* _native_verify.c: signature batches, checked by libsodium. */
PyObject *native_set_sodium(PyObject *self, PyObject *args);
PyObject *native_verify_ed25519(PyObject *self, PyObject *args);

#endif
