"""How much memory this process may still use, whether an error means it ran out, and its CPU threads.

No Qt or napari here, and torch only inside the thread functions: the engine, the batch, the
CLI and the widget share these rules.

The memory a process may use is the least of what the machine has free (psutil's
``available``), what its address-space and data-segment limits leave (``ulimit -v`` /
``ulimit -d``, read with :mod:`resource`), and what its control group leaves (cgroup v2
``memory.max`` − ``memory.current``, or v1 ``memory.limit_in_bytes`` − ``memory.usage_in_bytes``),
so a 4 GB container or ``prlimit --as=4G`` on a 24 GB machine plans for 4 GB, not 24.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

__all__ = [
    "MAX_THREADS",
    "WORKER_MEMORY",
    "available_memory",
    "default_threads",
    "is_out_of_memory",
    "max_workers",
    "set_threads",
    "torch_threads",
    "usable_cores",
]

#: assumed when nothing can be read (no psutil and no limit)
UNKNOWN = 4 * 2**30

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_paths(proc_cgroup: str | None = None) -> list[tuple[str, Path]]:
    """(version, folder) of the memory control groups named by ``/proc/self/cgroup`` (or the text given)."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return []
    lines = proc_cgroup.splitlines()
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2 (unified)
            base = _CGROUP_ROOT if (_CGROUP_ROOT / "cgroup.controllers").exists() else _CGROUP_ROOT / "unified"
            found.append(("v2", base / rel))
        elif "memory" in controllers.split(","):
            found.append(("v1", _CGROUP_ROOT / "memory" / rel))
    return found


def cgroup_free(proc_cgroup: str | None = None) -> int | None:
    """Bytes this process's control group still allows, or None when it sets no limit.

    Every level from the process's own group up to the root is read, since a parent's
    limit binds its children too.

    Parameters
    ----------
    proc_cgroup : str or None
        Stands in for the text of ``/proc/self/cgroup`` (read when None).

    Returns
    -------
    int or None
        The least of ``limit - usage`` (bytes, at least 0) over the levels that set a limit:
        cgroup v2 ``memory.max`` − ``memory.current``, v1 ``memory.limit_in_bytes`` −
        ``memory.usage_in_bytes`` (a v1 limit of 2**60 or more means none); None without one.

    Examples
    --------
    >>> cgroup_free("") is None  # no control group named
    True
    """
    best = None
    for version, folder in _cgroup_paths(proc_cgroup):
        for level in [folder, *folder.parents]:
            if not str(level).startswith(str(_CGROUP_ROOT)):
                break
            if version == "v2":
                limit, used = _read_int(level / "memory.max"), _read_int(level / "memory.current")
            else:
                limit, used = _read_int(level / "memory.limit_in_bytes"), _read_int(level / "memory.usage_in_bytes")
            if limit is None or limit >= 2**60 or used is None:  # v1 writes "no limit" as a huge number
                continue
            free = max(limit - used, 0)
            best = free if best is None else min(best, free)
            if level == _CGROUP_ROOT:
                break
    return best


def rlimit_free() -> int | None:
    """Bytes the address-space and data limits (``ulimit -v``, ``ulimit -d``) still leave, or None.

    Returns
    -------
    int or None
        The least of ``RLIMIT_AS`` − the process's virtual size and ``RLIMIT_DATA`` − its data
        segment (bytes, at least 0, read with :mod:`resource` and psutil); None when neither is
        set, or off POSIX, or without psutil.
    """
    if resource is None:  # pragma: no cover - not POSIX
        return None
    best = None
    info = psutil.Process().memory_info()
    for name, used in (("RLIMIT_AS", info.vms), ("RLIMIT_DATA", getattr(info, "data", info.vms))):
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        free = max(int(soft) - int(used), 0)
        best = free if best is None else min(best, free)
    return best


def available_memory() -> int:
    """Bytes of host memory this process can still allocate.

    Returns
    -------
    int
        The least of psutil's ``virtual_memory().available``, :func:`rlimit_free` and
        :func:`cgroup_free`; ``UNKNOWN`` (4 GiB) when none can be read.

    Examples
    --------
    >>> available_memory() > 0
    True
    """
    candidates = [int(psutil.virtual_memory().available)]
    for value in (rlimit_free(), cgroup_free()):
        if value is not None:
            candidates.append(value)
    return min(candidates) if candidates else UNKNOWN


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (``MemoryError``, torch's CPU or CUDA out-of-memory).

    Parameters
    ----------
    exc : BaseException
        What a run raised.

    Returns
    -------
    bool
        True for ``MemoryError``, an exception class named ``OutOfMemoryError`` (torch's
        ``torch.OutOfMemoryError``), or a ``RuntimeError`` whose message says "out of memory",
        "can't/cannot allocate memory", "not enough memory" or "failed to allocate".  oneDNN's
        "could not create a primitive", which a convolution raises when its workspace cannot be
        allocated, and C++'s ``std::bad_alloc`` from autograd count too.

    Examples
    --------
    >>> is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    True
    >>> is_out_of_memory(ValueError("out of memory"))
    False
    """
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text
        for s in (
            "out of memory",
            "can't allocate memory",
            "cannot allocate memory",
            "not enough memory",
            "failed to allocate",
            "could not create a primitive",
            "std::bad_alloc",
        )
    )


#: the most CPU threads a process is given (torch takes a C int; no machine has more cores)
MAX_THREADS = 4096
#: memory a worker process needs before it reads an image (Python, numpy, torch and dask loaded)
WORKER_MEMORY = 512 * 2**20


def max_workers() -> int:
    """The most worker processes this machine can run side by side: one per usable core, as memory allows.

    Returns
    -------
    int
        ``min(usable_cores(), available_memory() // WORKER_MEMORY)``, at least 1.

    Examples
    --------
    >>> 1 <= max_workers() <= usable_cores()
    True
    """
    return max(1, min(usable_cores(), available_memory() // WORKER_MEMORY))


# -- CPU threads ----------------------------------------------------------------------------------
def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the system tells, else all).

    Returns
    -------
    int
        At least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(processes: int = 1) -> int:
    """The torch thread count a run uses unless told: half the usable cores, shared among ``processes``, at least 1.

    torch's own choice (one thread per core) waits at every parallel step for
    its slowest thread: on a 2-core machine with one other busy process a run
    with 2 threads became 10-15x slower, while with 1 thread it only shares
    its core.  Half the cores leaves room for one such neighbour per thread.

    Parameters
    ----------
    processes : int
        Worker processes sharing the cores (values below 1 count as 1).

    Returns
    -------
    int
        ``usable_cores() // 2 // processes``, at least 1.

    Examples
    --------
    >>> default_threads(10**6)
    1
    """
    return max(1, usable_cores() // 2 // max(1, int(processes)))


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count (None: leave it).

    Parameters
    ----------
    threads : int or None
        Threads for torch (``torch.set_num_threads``); None or 0 leaves the count as it is.
    """
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """While active, torch uses ``threads`` CPU threads (None: as it is); the count before is restored after.

    Parameters
    ----------
    threads : int or None
        Threads for torch; None or 0 changes nothing.

    Yields
    ------
    None
    """
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
