"""torch's thread count: chosen from the cores other programs leave free, an explicit count honoured, restored after."""

import subprocess
import sys
import threading
import time
from collections import namedtuple

import numpy as np
import pytest

from napari_levelset import resources
from napari_levelset.errors import InputError
from napari_levelset.resources import CpuLoad, adaptive_threads, run_threads, threads_for, torch_threads

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    """Give the next test torch's count; no variable fixes the count here (the test session sets one)."""
    for name in resources.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("load", "processes", "expected"),
    [
        (CpuLoad(cores=2, busy=0.0), 1, 2),  # idle: a thread per core
        (CpuLoad(cores=2, busy=0.2), 1, 2),  # a core 80% idle counts as free
        (CpuLoad(cores=2, busy=1.0), 1, 1),  # one busy neighbour on 2 cores: 1 thread
        (CpuLoad(cores=2, busy=0.6), 1, 1),  # a core 40% busy does not count
        (CpuLoad(cores=2, busy=2.0), 1, 1),  # all busy: still 1
        (CpuLoad(cores=16, busy=3.0), 1, 13),
        (CpuLoad(cores=16, busy=3.0), 4, 3),  # shared among worker processes
        (CpuLoad(cores=16, busy=0.0, quota=4.0), 1, 4),  # the control group's CPU quota caps it
        (CpuLoad(cores=16, busy=0.0, quota=0.5), 1, 1),
        (CpuLoad(cores=2, busy=0.0), 8, 1),
    ],
)
def test_threads_follow_the_free_cores(load, processes, expected):
    assert threads_for(load, processes) == expected
    assert adaptive_threads(processes, read=lambda: load) == expected


def test_without_a_reading_half_the_cores_are_used():
    assert threads_for(None) == resources.default_threads()
    assert adaptive_threads(read=lambda: None) == resources.default_threads()


def test_an_explicit_or_enclosing_count_wins_over_the_load():
    busy = CpuLoad(cores=2, busy=2.0)
    assert run_threads(3, read=lambda: busy) == 3
    assert run_threads(None, read=lambda: busy) == 1
    with torch_threads(5):
        assert run_threads(None, read=lambda: busy) == 5
        with torch_threads(2):
            assert run_threads(None, read=lambda: busy) == 2
        assert run_threads(None, read=lambda: busy) == 5
    assert run_threads(None, read=lambda: CpuLoad(cores=4, busy=0.0)) == 4


def test_a_count_the_environment_fixes_wins_over_the_load(monkeypatch):
    idle = CpuLoad(cores=4, busy=0.0)
    assert resources.environment_threads({"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "2"}) == 3
    assert resources.environment_threads({"OMP_NUM_THREADS": "4,2"}) == 4
    assert resources.environment_threads({"OMP_NUM_THREADS": "0", "MKL_NUM_THREADS": "2"}) == 2
    assert resources.environment_threads({"OMP_NUM_THREADS": "", "MKL_NUM_THREADS": "many"}) is None
    assert run_threads(read=lambda: idle) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert run_threads(read=lambda: idle) == 1
    assert run_threads(2, read=lambda: idle) == 2
    with torch_threads(3):
        assert run_threads(read=lambda: idle) == 3


def test_an_enclosing_count_belongs_to_its_own_thread():
    seen = []
    with torch_threads(5):
        t = threading.Thread(target=lambda: seen.append(run_threads(read=lambda: CpuLoad(cores=3, busy=0.0))))
        t.start()
        t.join()
    assert seen == [3]


def test_the_cpu_load_is_read_from_the_machine():
    load = resources.cpu_load(0.05)
    assert load is not None
    assert load.cores == resources.usable_cores()
    assert 0.0 <= load.busy <= load.cores
    assert 0.0 <= load.free <= load.cores


def test_a_busy_neighbour_is_seen():
    """A spinning child process keeps at least half a core busy (more when the machine is not crowded)."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 30\nwhile time.time() < t: pass"])
    try:
        load = resources.cpu_load(0.5)
    finally:
        child.kill()
        child.wait()
    assert load is not None and load.busy >= 0.5


Times = namedtuple("Times", "user nice system idle iowait guest")


def test_others_busy_time_leaves_this_process_out_and_counts_only_its_cores():
    """From fed-in CPU times: cores' worth of busy time over the cores that count, less this process's."""
    start = [Times(0, 0, 0, 0, 0, 0)] * 3
    # over 1 s: core 0 all busy (0.5 s of it waiting on a disk counts as idle), core 1 idle, core 2 all busy
    end = [Times(0.3, 0.0, 0.2, 0.0, 0.5, 0.0), Times(0, 0, 0, 1.0, 0, 0), Times(0.9, 0.1, 0, 0, 0, 0.4)]
    assert resources.others_busy(start, end, [0, 1, 2], 0.0, 1.0) == pytest.approx(1.5)
    assert resources.others_busy(start, end, [1, 2], 0.0, 1.0) == pytest.approx(1.0 * 2 / (1.0 + 1.0))
    assert resources.others_busy(start, end, [0, 1, 2], 0.4, 1.0) == pytest.approx(1.1)  # 0.4 s were mine
    assert resources.others_busy(start, end, [1], 0.5, 1.0) == 0.0  # never below 0
    assert resources.others_busy(start, start, [0, 1], 0.0, 1.0) == 0.0  # counters that did not move
    load = CpuLoad(cores=3, busy=resources.others_busy(start, end, [0, 1, 2], 0.0, 1.0))
    assert threads_for(load) == 1  # 1.5 free: one core counts


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_cgroup_cpu_quota_is_read_at_every_level(tmp_path, monkeypatch, version):
    monkeypatch.setattr(resources, "_CGROUP_ROOT", tmp_path)
    if version == "v2":
        (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
        inner = tmp_path / "outer" / "inner"
        inner.mkdir(parents=True)
        (tmp_path / "outer" / "cpu.max").write_text("150000 100000\n")
        (inner / "cpu.max").write_text("max 100000\n")
        text = "0::/outer/inner\n"
    else:
        inner = tmp_path / "cpu" / "outer" / "inner"
        inner.mkdir(parents=True)
        (inner / "cpu.cfs_quota_us").write_text("-1\n")
        (inner / "cpu.cfs_period_us").write_text("100000\n")
        (inner.parent / "cpu.cfs_quota_us").write_text("150000\n")
        (inner.parent / "cpu.cfs_period_us").write_text("100000\n")
        text = "4:cpu,cpuacct:/outer/inner\n"
    assert resources.cpu_quota(text) == pytest.approx(1.5)
    assert resources.cpu_quota("") is None
    assert threads_for(CpuLoad(cores=8, busy=0.0, quota=resources.cpu_quota(text))) == 1


def _watch_threads(monkeypatch):
    """Record torch's thread count each time a run starts its iterations (the real run goes on)."""
    from napari_levelset.method import segmentation

    seen = []
    real = segmentation.run_with_progress

    def watched(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation, "run_with_progress", watched)
    return seen


IMAGE = np.zeros((32, 32), np.float32)
IMAGE[8:24, 8:24] = 1


def test_segment_honours_an_explicit_count_and_restores_torchs(monkeypatch):
    from napari_levelset import segment

    seen = _watch_threads(monkeypatch)
    torch.set_num_threads(3)
    labels = segment(IMAGE, n_classes=2, iterations=2, threads=1)
    assert labels.shape == IMAGE.shape
    assert torch.get_num_threads() == 3
    with torch_threads(2):
        segment(IMAGE, n_classes=2, iterations=2)  # the enclosing block's count
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 3
    assert seen == [1, 2]


@pytest.mark.parametrize(("load", "expected"), [(CpuLoad(cores=2, busy=1.0), 1), (CpuLoad(cores=4, busy=0.0), 4)])
def test_segment_without_a_count_follows_the_load_and_restores_torchs(monkeypatch, load, expected):
    from napari_levelset import segment

    seen = _watch_threads(monkeypatch)
    monkeypatch.setattr(resources, "cpu_load", lambda sample=resources.SAMPLE_S: load)
    torch.set_num_threads(3)
    segment(IMAGE, n_classes=2, iterations=2)
    assert seen == [expected]
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5, "two", True])
def test_segment_refuses_a_bad_count(bad):
    from napari_levelset import segment

    torch.set_num_threads(3)
    with pytest.raises(InputError, match="threads"):
        segment(IMAGE, n_classes=2, iterations=2, threads=bad)
    assert torch.get_num_threads() == 3


def test_a_batch_in_this_process_runs_each_item_with_its_count(monkeypatch):
    from napari_levelset.scale.batch import segment_arrays

    seen = _watch_threads(monkeypatch)
    monkeypatch.setattr(resources, "cpu_load", lambda sample=resources.SAMPLE_S: CpuLoad(cores=2, busy=1.0))
    torch.set_num_threads(3)
    out = segment_arrays([IMAGE, IMAGE], threads=2, n_classes=2, iterations=2)
    assert not out.failed and seen == [2, 2]
    segment_arrays([IMAGE], n_classes=2, iterations=2)  # no count: from the load, at the item's start
    assert seen == [2, 2, 1]
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("command", ["segment", "train"])
def test_the_commands_say_how_the_default_is_chosen(capsys, command):
    from napari_levelset.cli.main import main

    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads N" in text and "other programs leave free" in text


def test_the_widgets_worker_sets_the_count_in_its_own_thread(monkeypatch):
    """A widget run sets torch's count in the worker thread that runs it; the main thread keeps its own."""
    from napari_levelset.napari._session import Handover
    from napari_levelset.napari._worker import Final, RunRequest, Started, run_segmentation
    from napari_levelset.settings import Settings

    monkeypatch.setattr(resources, "cpu_load", lambda sample=resources.SAMPLE_S: CpuLoad(cores=2, busy=1.0))
    torch.set_num_threads(3)
    req = RunRequest(
        image=IMAGE,
        settings=Settings(n_classes=2),
        axes=dict(channel_axis=None, spatial_dims=None, spacing=None),
        iterations=2,
    )
    seen, items = {}, []

    def work():
        handover = Handover()
        for item in run_segmentation(req, handover):
            items.append(item)
            if isinstance(item, Started):
                seen["during"] = torch.get_num_threads()
            handover.ready.set()
        seen["after"] = torch.get_num_threads()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert isinstance(items[-1], Final) and items[-1].output.shape == IMAGE.shape
    assert seen == {"during": 1, "after": 3}
    assert torch.get_num_threads() == 3


def test_a_second_reading_soon_after_the_first_measures_from_it_without_waiting(monkeypatch):
    from napari_levelset import resources

    first = resources.cpu_load(0.05)
    assert first is not None

    def no_wait(seconds):
        raise AssertionError(f"waited {seconds} s for a reading the last call left")

    time.sleep(0.06)
    monkeypatch.setattr(resources.time, "sleep", no_wait)
    second = resources.cpu_load(0.05)
    assert second is not None and 0.0 <= second.busy <= second.cores


def _nuclei_image():
    from napari_levelset.evaluation.synthetic import nuclei

    return nuclei((128, 128), n_objects=8, diameter=16.0, seed=0)[0]


def test_instances_on_a_working_copy_use_at_most_half_the_cores(monkeypatch):
    """Their copy is small: more threads than half the cores wait on each other (``RunPlan.threads``); a count
    given (to the call, by an enclosing block, by the environment) is used as it is, and other outputs follow
    the load."""
    from napari_levelset import segment

    seen = _watch_threads(monkeypatch)
    monkeypatch.setattr(resources, "cpu_load", lambda sample=resources.SAMPLE_S: CpuLoad(cores=4, busy=0.0))
    monkeypatch.setattr(resources, "usable_cores", lambda: 4)
    torch.set_num_threads(3)
    image = _nuclei_image()
    segment(image, regions="instances")
    segment(image, regions="instances", threads=3)
    segment(image, n_classes=2, iterations=2)
    with torch_threads(3):  # a count set around the call is the user's: used as it is
        segment(image, regions="instances")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # and so is the environment's
    segment(image, regions="instances")
    assert seen == [2, 3, 4, 3, 3]
    assert torch.get_num_threads() == 3


def test_the_widgets_instances_use_the_count_segment_uses(monkeypatch):
    from napari_levelset.napari._session import Handover
    from napari_levelset.napari._worker import RunRequest, Started, run_segmentation
    from napari_levelset.settings import Settings

    monkeypatch.setattr(resources, "cpu_load", lambda sample=resources.SAMPLE_S: CpuLoad(cores=4, busy=0.0))
    monkeypatch.setattr(resources, "usable_cores", lambda: 4)
    req = RunRequest(
        image=_nuclei_image(),
        settings=Settings(regions="instances"),
        axes=dict(channel_axis=None, spatial_dims=None, spacing=None),
        iterations=None,
    )
    seen = []
    handover = Handover()
    for item in run_segmentation(req, handover):
        if isinstance(item, Started):
            seen.append(torch.get_num_threads())
        handover.ready.set()
    assert seen == [2]
