"""Issue 28: the trust path is a vetted library and no third-party binary is
patched.  Grep-style checks over the source tree and the installed package:

* no hand-written curve arithmetic ships (the retired
  ``ledger/_native_ed25519.c``): signatures are libsodium's business;
* nothing in ``node/`` reads an ELF symbol table or writes into a loaded
  library's memory (the retired ``node/tablereads.py`` overwrote a static
  variable of libleveldb); ``ctypes`` there only calls documented C library
  functions (``prctl``, ``mallopt``);
* pyelftools is no longer a dependency.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import ledger
import node

ROOT = Path(__file__).resolve().parent.parent
NODE = Path(node.__file__).parent
LEDGER = Path(ledger.__file__).parent

# What patching a loaded binary through ctypes or pyelftools looks like.
PATCHING = re.compile(r"elftools|ELFFile|\.symtab|in_dll|from_address|ctypes\.memmove|"
                      r"ctypes\.memset|ctypes\.cast\(|/proc/self/mem|mprotect|tablereads")
# node/ modules allowed to import ctypes, and why: documented libc calls.
CTYPES_USERS = {"cluster.py": "prctl(PR_SET_PDEATHSIG)", "memtune.py": "mallopt"}


def test_no_module_of_node_patches_a_binary() -> None:
    offenders = {p.name: m.group(0) for p in NODE.rglob("*.py")
                 if (m := PATCHING.search(p.read_text(encoding="utf-8")))}
    assert offenders == {}


def test_ctypes_in_node_only_where_it_calls_documented_libc_functions() -> None:
    users = {p.name for p in NODE.rglob("*.py") if "import ctypes" in p.read_text(encoding="utf-8")}
    assert users <= set(CTYPES_USERS), users - set(CTYPES_USERS)


def test_the_retired_modules_are_gone() -> None:
    assert importlib.util.find_spec("node.tablereads") is None
    assert not [p.name for p in LEDGER.iterdir() if "ed25519" in p.name.lower()]
    assert not (ROOT / "ledger" / "_native_ed25519.c").exists()


def test_no_pyelftools_dependency_and_no_ed25519_sources_in_the_build() -> None:
    setup_cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert "pyelftools" not in setup_cfg
    build = (ROOT / "setup.py").read_text(encoding="utf-8") + \
        (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    assert "ed25519" not in build
