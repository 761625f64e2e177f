"""Build the optional C accelerators (metadata lives in setup.cfg).

``ledger._native`` is optional: without a C compiler the build goes on and
the node runs the pure-Python paths it replaces (ledger/native.py says which
one a process uses)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ledger._native",
            ["ledger/_native.c", "ledger/_native_decode.c", "ledger/_native_batch.c",
             "ledger/_native_verify.c"],
            depends=["ledger/_native.h"],
            optional=True,
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
