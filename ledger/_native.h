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

/* _native_verify.c: signature batches, checked by libsodium. */
PyObject *native_set_sodium(PyObject *self, PyObject *args);
PyObject *native_verify_ed25519(PyObject *self, PyObject *args);

#endif
