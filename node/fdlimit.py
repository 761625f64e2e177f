"""The open-files limit that LevelDB's table cache needs.

``storage.max_open_files`` is how many table files LevelDB keeps open; past
that it closes and reopens tables on reads, which at 10M records (1,722
tables) cost a proof several times its CPU (docs/performance.md).  Each
open table is a file descriptor, so before opening the store the node
raises its soft ``RLIMIT_NOFILE`` (up to the hard limit, which needs no
privilege) to fit the table cache plus :data:`FD_RESERVE` descriptors for
sockets and LevelDB's own files.  Where the hard limit is lower, the table
cache is shrunk to fit and the node says so once: LevelDB failing to open
a table is a read error, far worse than a reopen.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("node.fdlimit")

# Descriptors kept for everything but table files: client and peer
# connections, the operator socket, LevelDB's log, manifest and lock.
FD_RESERVE = 1024
# LevelDB raises a smaller table cache to this.
MIN_TABLE_FILES = 74


def table_files_allowed(wanted: int) -> int:
    """The ``max_open_files`` to open the store with: ``wanted`` if the soft
    open-files limit is, or can be raised to, ``wanted + FD_RESERVE``; else
    what the limit leaves (at least LevelDB's minimum), with a warning."""
    need = wanted + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    allowed = max(MIN_TABLE_FILES, soft - FD_RESERVE)
    log.warning("storage.max_open_files %d does not fit the open-files limit %d (hard %d) "
                "with %d descriptors for connections: LevelDB keeps %d table files open. "
                "Raise the limit (LimitNOFILE=, ulimit -n) to keep them all.",
                wanted, soft, hard, FD_RESERVE, allowed)
    return allowed
