"""The peak memory of a child process, as the child itself measures it.

``ru_maxrss`` is kept across ``execve``: a child forked from a large test process (torch and
napari loaded) reports the parent's size as its own peak.  ``VmHWM`` in ``/proc/self/status``
belongs to the program's own address space, which ``execve`` makes anew, so it is the peak of
the child's program alone.
"""

from __future__ import annotations

PEAK_FOOTER = """
def _peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("PEAK_KB", _peak_kib())
"""


def peak_kib(stdout: str) -> int:
    """The child's peak resident memory in KiB, from the ``PEAK_KB`` line ``PEAK_FOOTER`` printed."""
    return int(next(line for line in stdout.splitlines()[::-1] if line.startswith("PEAK_KB")).split()[1])
