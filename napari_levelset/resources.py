"""How much memory this process may still use, whether an error means it ran out, and its CPU threads.

No Qt or napari here, and torch only inside the thread functions: the engine, the batch, the
CLI and the widget share these rules.

The memory a process may use is the least of what the machine has free (psutil's
``available``), what its address-space and data-segment limits leave (``ulimit -v`` /
``ulimit -d``, read with :mod:`resource`), and what its control group leaves (cgroup v2
``memory.max`` − ``memory.current``, or v1 ``memory.limit_in_bytes`` − ``memory.usage_in_bytes``),
so a 4 GB container or ``prlimit --as=4G`` on a 24 GB machine plans for 4 GB, not 24.

The torch thread count a run uses unless told (``run_threads``) follows the CPU cores that are
free of other programs when it starts (``cpu_load``, ``threads_for``): torch waits at every
parallel step for its slowest thread, so a thread that shares its core with another busy
program slows the whole run down many times.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

__all__ = [
    "MAX_THREADS",
    "WORKER_MEMORY",
    "CpuLoad",
    "adaptive_threads",
    "available_memory",
    "chooses_from_load",
    "cpu_load",
    "cpu_quota",
    "default_threads",
    "environment_threads",
    "is_out_of_memory",
    "max_workers",
    "others_busy",
    "run_threads",
    "set_threads",
    "threads_for",
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


def _cgroup_paths(proc_cgroup: str | None = None, controller: str = "memory") -> list[tuple[str, Path]]:
    """(version, folder) of the ``controller`` control groups named by ``/proc/self/cgroup`` (or the text given)."""
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
        elif controller in controllers.split(","):
            found.append(("v1", _CGROUP_ROOT / controller / rel))
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
    """Half the usable cores, shared among ``processes``, at least 1: the count when the load cannot be read.

    torch's own choice (one thread per core) waits at every parallel step for
    its slowest thread: on a 2-core machine with one other busy process a run
    with 2 threads became 5-15x slower, while with 1 thread it only shares
    its core.  Half the cores leaves room for one such neighbour per thread.
    :func:`run_threads` uses it where :func:`cpu_load` reads nothing.

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


#: seconds over which :func:`cpu_load` measures the CPU time other programs use
SAMPLE_S = 0.1
#: a core counts as free when other programs leave at least this share of it idle
FREE_SHARE = 0.75


@dataclass(frozen=True)
class CpuLoad:
    """The CPU a run may use and what other programs keep busy of it (what :func:`threads_for` decides from).

    Parameters
    ----------
    cores : int
        CPU cores this process may run on (its affinity mask).
    busy : float
        Cores' worth of CPU time other processes used on those cores while it was measured
        (0..``cores``; this process's own use is not counted).
    quota : float or None
        Cores' worth of CPU time the process's control group may use (cgroup ``cpu.max`` or
        ``cpu.cfs_quota_us / cpu.cfs_period_us``); None without a quota.
    """

    cores: int
    busy: float
    quota: float | None = None

    @property
    def free(self) -> float:
        """Cores' worth of CPU time left to this process: ``cores - busy``, at most ``quota``, at least 0."""
        free = self.cores - self.busy
        if self.quota is not None:
            free = min(free, self.quota)
        return max(0.0, free)


def cpu_quota(proc_cgroup: str | None = None) -> float | None:
    """Cores' worth of CPU time this process's control group allows, or None when it sets no quota.

    Parameters
    ----------
    proc_cgroup : str or None
        Stands in for the text of ``/proc/self/cgroup`` (read when None).

    Returns
    -------
    float or None
        The least over the levels from the process's group up to the root of cgroup v2
        ``cpu.max`` (``quota period``; ``max`` means none) or v1 ``cpu.cfs_quota_us /
        cpu.cfs_period_us`` (-1 means none); None where no level sets one.

    Examples
    --------
    >>> cpu_quota("") is None  # no control group named
    True
    """
    best = None
    for version, folder in _cgroup_paths(proc_cgroup, "cpu"):
        for level in [folder, *folder.parents]:
            if not str(level).startswith(str(_CGROUP_ROOT)):
                break
            if version == "v2":
                try:
                    words = (level / "cpu.max").read_text().split()
                except OSError:
                    words = []
                quota = int(words[0]) if len(words) == 2 and words[0].isdigit() else None
                period = int(words[1]) if len(words) == 2 and words[1].isdigit() else None
            else:
                quota, period = _read_int(level / "cpu.cfs_quota_us"), _read_int(level / "cpu.cfs_period_us")
            if quota is not None and period and quota > 0 and period > 0:
                best = quota / period if best is None else min(best, quota / period)
            if level == _CGROUP_ROOT:
                break
    return best


def _times(t) -> tuple[float, float]:
    """(busy, total) seconds of one CPU's ``psutil.cpu_times`` (guest time is counted in user time already)."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - t.idle - getattr(t, "iowait", 0.0), total


#: the last CPU-time reading of ``cpu_load`` (own seconds, per-core times, monotonic time)
_last_reading = None
#: ``cpu_load`` measures from the last reading, without waiting, when it is at most this old (seconds)
READING_REUSE_S = 30.0


def cpu_load(sample: float = SAMPLE_S) -> CpuLoad | None:
    """How busy other programs keep this process's CPU cores, measured over ``sample`` seconds.

    The busy time of the cores in the affinity mask (``psutil.cpu_times(percpu=True)``, from
    ``/proc/stat`` on Linux) is read before and after a pause, less this process's own CPU
    time (``psutil.Process().cpu_times()``).  A call within ``READING_REUSE_S`` seconds of
    the last one (and at least ``sample`` after it) measures from that reading instead,
    without the pause: runs one after another pay for it once.  Where the per-core times cannot be read, the
    1-minute load average (``os.getloadavg``) stands in for the busy cores.

    Parameters
    ----------
    sample : float
        Seconds to measure over (the call sleeps that long).

    Returns
    -------
    CpuLoad or None
        None where neither the CPU times nor the load average can be read.
    """
    global _last_reading
    cores = usable_cores()
    quota = cpu_quota()
    try:
        me = psutil.Process()
        last = _last_reading
        if last is not None and sample <= time.monotonic() - last[2] <= READING_REUSE_S:
            own0, before, t0 = last  # the reading a recent call left: no need to wait
        else:
            own0, before, t0 = sum(me.cpu_times()[:2]), psutil.cpu_times(percpu=True), time.monotonic()
            time.sleep(max(0.0, float(sample)))
        own1, after, t1 = sum(me.cpu_times()[:2]), psutil.cpu_times(percpu=True), time.monotonic()
        _last_reading = (own1, after, t1)
    except (psutil.Error, OSError, AttributeError, NotImplementedError):
        try:
            return CpuLoad(cores, min(float(cores), os.getloadavg()[0]), quota)
        except (AttributeError, OSError):
            return None
    try:
        mine = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        mine = list(range(len(after)))
    if not mine or len(before) != len(after) or max(mine) >= len(after):
        mine = list(range(len(after)))
    return CpuLoad(cores, min(float(cores), others_busy(before, after, mine, own1 - own0, t1 - t0)), quota)


def others_busy(before, after, cpus, own_seconds: float, seconds: float) -> float:
    """Cores' worth of CPU time other processes used on ``cpus`` between two readings of the CPU times.

    Parameters
    ----------
    before, after : sequence of named tuples
        ``psutil.cpu_times(percpu=True)`` at the start and the end (fields ``idle``, and where
        present ``iowait``, ``guest``, ``guest_nice``, counted as psutil's ``cpu_percent`` does).
    cpus : sequence of int
        The cores that count (indices into ``before`` and ``after``).
    own_seconds : float
        CPU seconds this process used meanwhile (left out).
    seconds : float
        Wall-clock seconds between the readings.

    Returns
    -------
    float
        ``len(cpus) * busy / total`` (the cores' busy share of their time) less
        ``own_seconds / seconds``, at least 0; 0 when the counters did not move.

    Examples
    --------
    >>> from collections import namedtuple
    >>> T = namedtuple("T", "user system idle")
    >>> round(others_busy([T(0, 0, 0), T(0, 0, 0)], [T(8, 0, 2), T(1, 0, 9)], [0, 1], 0.04, 0.1), 6)  # 0.4 mine
    0.5
    """
    busy = total = 0.0
    for i in cpus:
        (b0, s0), (b1, s1) = _times(before[i]), _times(after[i])
        busy, total = busy + b1 - b0, total + s1 - s0
    if total <= 0:  # the counters did not move (too short a sample): nothing measured
        return 0.0
    return max(0.0, len(cpus) * busy / total - own_seconds / max(seconds, 1e-9))


def threads_for(load: CpuLoad | None, processes: int = 1) -> int:
    """The torch thread count for a run from the CPU load: one thread per free core, shared among ``processes``.

    A core counts as free when other programs leave at least ``FREE_SHARE`` (3/4) of it idle:
    torch waits at every parallel step for its slowest thread, so a thread on a core that
    another program keeps busy holds the others up (on a 2-core machine beside one busy
    process, 2 threads took 5.5x as long as on the idle machine, 1 thread about 2x).

    Parameters
    ----------
    load : CpuLoad or None
        What :func:`cpu_load` measured; None: :func:`default_threads` (half the usable cores).
    processes : int
        Worker processes sharing the free cores (values below 1 count as 1).

    Returns
    -------
    int
        ``floor(load.free + 1 - FREE_SHARE) // processes``, from 1 to ``MAX_THREADS``.

    Examples
    --------
    >>> threads_for(CpuLoad(cores=2, busy=0.05))  # idle
    2
    >>> threads_for(CpuLoad(cores=2, busy=1.0))  # one busy neighbour
    1
    >>> threads_for(CpuLoad(cores=16, busy=0.0, quota=4.0), processes=2)
    2
    """
    if load is None:
        return default_threads(processes)
    whole = math.floor(load.free + (1.0 - FREE_SHARE) + 1e-9)
    return max(1, min(MAX_THREADS, whole // max(1, int(processes))))


def adaptive_threads(processes: int = 1, read: Callable[[], CpuLoad | None] | None = None) -> int:
    """The torch thread count for a run starting now: ``threads_for(read(), processes)``.

    Parameters
    ----------
    processes : int
        Worker processes sharing the free cores.
    read : callable or None
        Returns the load; None: :func:`cpu_load` (looked up at each call; it takes ``SAMPLE_S``
        seconds).

    Returns
    -------
    int
        At least 1.
    """
    return threads_for((cpu_load if read is None else read)(), processes)


_chosen = threading.local()  # .stack: the counts of the torch_threads blocks active in this thread


#: environment variables that fix the thread count, in the order torch reads them
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def environment_threads(environ=None) -> int | None:
    """The thread count the environment fixes (``OMP_NUM_THREADS``, else ``MKL_NUM_THREADS``), or None.

    Parameters
    ----------
    environ : mapping or None
        Stands in for ``os.environ``.

    Returns
    -------
    int or None
        The first whole number >= 1 of the first variable set to one (OpenMP's ``4,2`` gives 4);
        None where neither is.

    Examples
    --------
    >>> environment_threads({"OMP_NUM_THREADS": "3"}), environment_threads({"MKL_NUM_THREADS": "x"})
    (3, None)
    """
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        first = str(environ.get(name, "")).split(",")[0].strip()
        if first.isdigit() and int(first) >= 1:
            return min(int(first), MAX_THREADS)
    return None


def chooses_from_load() -> bool:
    """Whether :func:`run_threads` without a count chooses it from the load here: no enclosing
    :func:`torch_threads` block in this thread and no count fixed by the environment.

    Returns
    -------
    bool
    """
    return not getattr(_chosen, "stack", None) and environment_threads() is None


def run_threads(
    threads: int | None = None, processes: int = 1, read: Callable[[], CpuLoad | None] | None = None
) -> int:
    """The torch thread count a run uses: ``threads`` when given, else the one an enclosing
    :func:`torch_threads` block of this thread chose, else the one the environment fixes
    (:func:`environment_threads`, per process), else :func:`adaptive_threads`.

    Parameters
    ----------
    threads : int or None
        The count asked for (None or 0: choose).
    processes : int
        Worker processes sharing the free cores (for :func:`adaptive_threads`).
    read : callable or None
        The load reader for :func:`adaptive_threads` (None: :func:`cpu_load`).

    Returns
    -------
    int
        At least 1.
    """
    if threads:
        return int(threads)
    stack = getattr(_chosen, "stack", None)
    if stack:
        return stack[-1]
    return environment_threads() or adaptive_threads(processes, read)


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

    A count given here is also what :func:`run_threads` (and so ``segment()`` without
    ``threads``) uses inside the block, in this thread.  With torch's OpenMP backend the count
    belongs to the thread that sets it (and to threads that first use torch later), so a run
    in a worker thread sets it in that thread.

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

    stack = _chosen.__dict__.setdefault("stack", [])
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    stack.append(int(threads))
    try:
        yield
    finally:
        stack.pop()
        torch.set_num_threads(before)
