"""Memory limits: what the process may use is read from its rlimit and cgroup, and runs finish within it."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_levelset import resources

resource = pytest.importorskip("resource")


def _run_limited(code: str, headroom_mb: int) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose address space may grow by ``headroom_mb`` after its imports."""
    prelude = textwrap.dedent(f"""
        import resource, psutil
        import numpy as np
        import torch
        from napari_levelset.method.segmentation import segment
        from napari_levelset.resources import available_memory
        vms = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vms + {headroom_mb} * 2**20, resource.RLIM_INFINITY))
    """)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("max_pixels", [None, 10**9])
def test_a_run_finishes_within_an_address_space_limit(max_pixels):
    """A 2048² image needs more than 800 MB at full resolution.  ``None``: the crops are planned from the
    limit, not from the machine's free memory; ``10**9`` (crops forbidden): the failed allocation falls
    back to crops.  Each in a fresh process, as the command runs."""
    done = _run_limited(
        f"""
        free = available_memory()
        assert free <= 800 * 2**20, free
        img = np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)
        img[512:1536, 512:1536] += 4
        kw = {{}} if {max_pixels!r} is None else {{"max_pixels": {max_pixels!r}}}
        labels = segment(img, n_classes=2, iterations=2, **kw)
        assert labels.shape == img.shape
        inside = np.bincount(labels[600:1400, 600:1400].ravel()).argmax()
        outside = np.bincount(labels[:400, :400].ravel()).argmax()
        assert inside != outside, (inside, outside)
        print("ok")
    """,
        headroom_mb=800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_available_memory_is_at_most_the_machine_free_memory():
    psutil = pytest.importorskip("psutil")
    assert 0 < resources.available_memory() <= psutil.virtual_memory().available * 1.05


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cgroup_limits_are_read_at_every_level(tmp_path, monkeypatch, version):
    monkeypatch.setattr(resources, "_CGROUP_ROOT", tmp_path)
    if version == "v1":
        proc = "4:memory:/outer/inner\n1:cpu:/\n"
        outer, inner = tmp_path / "memory" / "outer", tmp_path / "memory" / "outer" / "inner"
        names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        unlimited = str(2**63 - 4096)
    else:
        proc = "0::/outer/inner\n"
        (tmp_path / "cgroup.controllers").write_text("memory\n")
        outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
        names = ("memory.max", "memory.current")
        unlimited = "max"
    inner.mkdir(parents=True)
    (inner / names[0]).write_text(unlimited + "\n")
    (inner / names[1]).write_text("1000\n")
    assert resources.cgroup_free(proc) is None  # no level sets a limit
    (outer / names[0]).write_text(str(5 * 2**30))
    (outer / names[1]).write_text(str(1 * 2**30))
    assert resources.cgroup_free(proc) == 4 * 2**30  # the parent's limit binds the child
    (inner / names[0]).write_text(str(2 * 2**30))
    assert resources.cgroup_free(proc) == 2 * 2**30 - 1000  # the tighter of the two


def test_out_of_memory_errors_are_recognised():
    assert resources.is_out_of_memory(MemoryError())
    assert resources.is_out_of_memory(
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 8 bytes"
        )
    )
    assert resources.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert resources.is_out_of_memory(RuntimeError("std::bad_alloc"))
    assert not resources.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not resources.is_out_of_memory(ValueError("out of memory"))


def test_the_command_finishes_within_an_address_space_limit(tmp_path):
    """``napari-levelset segment`` on a 2048² RGB image under ``ulimit -v`` 2.5 GB: it used to plan
    for the machine's free memory and end with "out of memory"; now it writes the labels."""
    import tifffile
    from skimage import data, transform

    image = (transform.resize(data.astronaut(), (2048, 2048), order=1) * 255).astype(np.uint8)
    src, out = tmp_path / "rgb.tif", tmp_path / "labels.tif"
    tifffile.imwrite(src, image)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2_500_000_000, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-m", "napari_levelset.cli.main", "segment", str(src), "-o", str(out), "--iterations", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    labels = tifffile.imread(out)
    assert labels.shape == image.shape[:2] and len(np.unique(labels)) > 1


def test_torch_threads_are_set_for_a_while_and_restored():
    torch = pytest.importorskip("torch")

    assert resources.default_threads(10**6) == 1 <= resources.default_threads() <= resources.usable_cores()
    before = torch.get_num_threads()
    with resources.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with resources.torch_threads(None):
        assert torch.get_num_threads() == before
