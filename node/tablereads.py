"""How LevelDB reads its table files: memory-mapped (its default) or pread.

LevelDB on 64-bit Linux memory-maps the first 1,000 table files it opens and
reads the rest with ``pread``.  Every page a read touches in a mapped table
then counts in the node's resident memory (``RssFile``) until the kernel
reclaims it.  Under a random proof load that is most of the store, more
than the node's own (anonymous) memory (docs/performance.md).

With ``pread`` the same pages stay in the kernel's page cache, shared and
reclaimable but outside the process, and the blocks LevelDB decodes go into
its block cache, which ``storage.block_cache_bytes`` bounds.  RocksDB reads
this way by default (``use_mmap_reads = false``).  On a large store this
keeps the node's RSS to its own memory at about the same proof rate
(docs/performance.md; docs/operators.md says when to choose ``mmap``).

LevelDB has no option for this, and plyvel does not reach the limit, which
lives in one static int of ``util/env_posix.cc``::

    constexpr const int kDefaultMmapLimit = (sizeof(void*) >= 8) ? 1000 : 0;
    int g_mmap_limit = kDefaultMmapLimit;

read once, when the process's first ``Options`` creates LevelDB's POSIX
environment.  LevelDB's own tests lower it the same way, through
``EnvPosixTestHelper::SetReadOnlyMMapLimit``, which the shared library does
not export.  So :func:`read_tables_with_pread` finds the variable by name in
the symbol table of the libleveldb that plyvel loaded (plyvel's wheels ship
it unstripped) and sets it to 0, after checking everything it can:

* the symbol is a 4-byte data object in a writable section;
* it still holds LevelDB's default, 1000 (0: already done, nothing to do);
* no LevelDB environment exists yet, which the caller guarantees by calling
  this first thing in the process (``node/main.py``, before the store opens).

Anything else (another C library, a stripped or system libleveldb, a new
LevelDB whose variable moved) raises :class:`TableReadsUnchanged` with the
reason, and tables stay mapped: the node logs it and runs as before.
:func:`mapped_table_files` is the check that it worked; the node logs it
after opening its store and the tests assert it.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Symbol, SymbolTableSection

# leveldb::(anonymous namespace)::g_mmap_limit, as the Itanium C++ ABI spells it.
MMAP_LIMIT_SYMBOL = "_ZN7leveldb12_GLOBAL__N_112g_mmap_limitE"
LEVELDB_DEFAULT_MMAP_LIMIT = 1000  # kDefaultMmapLimit on 64-bit
RTLD_DI_LINKMAP = 2  # dlinfo request: the library's struct link_map


class TableReadsUnchanged(Exception):
    """LevelDB's table reads could not be switched to pread; tables stay mapped."""


def _mapped_paths(pid: int | None = None) -> list[str]:
    """The file paths a process (this one by default) has mapped, one per
    mapping, from /proc/<pid>/maps; raises OSError where it cannot be read."""
    with open(f"/proc/{pid or 'self'}/maps", encoding="utf-8") as maps:
        return [fields[5].strip() for line in maps
                if len(fields := line.split(maxsplit=5)) == 6]


def loaded_leveldb() -> Path:
    """The libleveldb shared object mapped into this process (plyvel's)."""
    import plyvel  # noqa: F401  (loading it maps libleveldb)

    try:
        paths = _mapped_paths()
    except OSError as exc:
        raise TableReadsUnchanged(f"cannot read /proc/self/maps: {exc.strerror}") from None
    for path in paths:
        if "libleveldb" in Path(path).name:
            return Path(path)
    raise TableReadsUnchanged("plyvel links LevelDB statically or the platform has no "
                              "/proc/self/maps; no libleveldb to adjust")


def _symbol_offset(library: Path) -> int:
    """``st_value`` of the mmap limit in ``library``, checked to be an int in writable data."""
    try:
        with open(library, "rb") as fh:
            elf = ELFFile(fh)
            symtab = elf.get_section_by_name(".symtab")
            if not isinstance(symtab, SymbolTableSection):
                raise TableReadsUnchanged(f"{library.name} is stripped (no .symtab)")
            sym = _find_symbol(elf, symtab, MMAP_LIMIT_SYMBOL)
            if sym is None:
                raise TableReadsUnchanged(f"{library.name} has no {MMAP_LIMIT_SYMBOL}")
            if sym["st_info"]["type"] != "STT_OBJECT" or sym["st_size"] != 4:
                raise TableReadsUnchanged(f"{MMAP_LIMIT_SYMBOL} in {library.name} is not "
                                          "a 4-byte data object")
            shndx = sym["st_shndx"]
            if not isinstance(shndx, int):
                raise TableReadsUnchanged(f"{MMAP_LIMIT_SYMBOL} is not defined in {library.name}")
            section = elf.get_section(shndx)
            if not section["sh_flags"] & SH_FLAGS.SHF_WRITE:
                raise TableReadsUnchanged(f"{MMAP_LIMIT_SYMBOL} is in read-only "
                                          f"{section.name} of {library.name}")
            return int(sym["st_value"])
    except (OSError, ELFError) as exc:
        raise TableReadsUnchanged(f"cannot read {library}: {exc}") from None


def _find_symbol(elf: ELFFile, symtab: SymbolTableSection, name: str) -> Symbol | None:
    """``name`` in ``symtab``, found by scanning the raw entries for its
    string-table offsets: pyelftools' ``get_symbol_by_name`` decodes every
    symbol first, which took a noticeable part of the node's start-up."""
    if elf.elfclass != 64 or not elf.little_endian:
        raise TableReadsUnchanged("not a 64-bit little-endian ELF library")
    strings = elf.get_section(symtab["sh_link"]).data()
    wanted = name.encode() + b"\0"
    offsets = set()
    at = strings.find(wanted)
    while at >= 0:  # also where the linker shared the tail of a longer string
        offsets.add(at)
        at = strings.find(wanted, at + 1)
    # Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16,
    # st_value u64, st_size u64.
    for index, (st_name, *_rest) in enumerate(struct.iter_unpack("<IBBHQQ", symtab.data())):
        if st_name in offsets:
            sym = symtab.get_symbol(index)
            if sym.name == name:
                return sym
    return None


def _load_address(library: Path) -> int:
    """Where the dynamic linker placed ``library`` (``link_map.l_addr``)."""
    try:
        handle = ctypes.CDLL(str(library))  # already loaded: the same handle back
        dlinfo = ctypes.CDLL(None).dlinfo
    except (OSError, AttributeError) as exc:
        raise TableReadsUnchanged(f"cannot ask the dynamic linker about {library.name}: "
                                  f"{exc}") from None
    dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    dlinfo.restype = ctypes.c_int
    link_map = ctypes.c_void_p()
    if dlinfo(handle._handle, RTLD_DI_LINKMAP, ctypes.byref(link_map)) != 0 \
            or not link_map.value:
        raise TableReadsUnchanged(f"dlinfo gave no link map for {library.name}")
    return ctypes.c_size_t.from_address(link_map.value).value  # l_addr, its first field


def mmap_limit(library: Path) -> ctypes.c_int:
    """LevelDB's mmap limit in the loaded ``library``, as a writable int."""
    return ctypes.c_int.from_address(_load_address(library) + _symbol_offset(library))


def read_tables_with_pread() -> Path:
    """Make LevelDB read table files with pread instead of mapping them.

    Must run before this process opens any LevelDB database.  Returns the
    library it adjusted; raises :class:`TableReadsUnchanged` (and changes
    nothing) when it cannot be done safely.
    """
    library = loaded_leveldb()
    limit = mmap_limit(library)
    if limit.value == 0:
        return library  # already switched in this process
    if limit.value != LEVELDB_DEFAULT_MMAP_LIMIT:
        raise TableReadsUnchanged(
            f"{MMAP_LIMIT_SYMBOL} holds {limit.value}, not LevelDB's default "
            f"{LEVELDB_DEFAULT_MMAP_LIMIT}: an unknown LevelDB, left alone")
    limit.value = 0
    return library


def mapped_table_files(directory: str | os.PathLike[str], pid: int | None = None) -> int:
    """How many of ``directory``'s LevelDB table files a process (this one by
    default) has mapped; 0 where there is no /proc/<pid>/maps to tell."""
    prefix = os.path.realpath(directory) + os.sep
    try:
        paths = _mapped_paths(pid)
    except OSError:
        return 0
    return len({path for path in paths
                if path.startswith(prefix) and path.endswith((".ldb", ".sst"))})
