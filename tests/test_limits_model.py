"""Limits: memory bounded by what an input can honestly claim (model files, instance scales).

Each hostile input runs in a child process whose peak resident memory (and, where stated,
time) is held under the bound in the test's name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from _memory import PEAK_FOOTER, peak_kib

from napari_levelset import segment
from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import load_model, pretrained_path, read_model_file, save_model
from napari_levelset.nn.unet import LevelSetUNet

GIB = 1 << 30


def run_child(code: str, timeout: float = 120.0) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``code`` in a child Python: ``(result, the child's peak resident memory in GB, seconds)``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + PEAK_FOOTER],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    seconds = time.perf_counter() - start
    return res, peak_kib(res.stdout) * 1024 / 1e9, seconds


def _tiny_model(path):
    net = LevelSetUNet(1, [2], base=4, levels=1, embed=4)
    return save_model(path, net, {"note": "tiny"})


def _rewrite(src, dst, replace):
    """Copy the zip ``src`` to ``dst``; ``replace(name, zout)`` may write an entry itself (True)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if not replace(info.filename, zout):
                zout.writestr(info, zin.read(info.filename))
    return dst


def _inflating_model(tmp_path, size=2 * GIB, compress=zipfile.ZIP_DEFLATED):
    """A small model file whose first weight record inflates to ``size`` bytes of zeros (stored as it is
    with ``compress=zipfile.ZIP_STORED``: a file as large as it claims, whose weights outgrow its network)."""
    src = _tiny_model(tmp_path / "tiny.pt")

    def replace(name, zout):
        if not name.endswith("/data/0"):
            return False
        info = zipfile.ZipInfo(name)
        info.compress_type = compress
        chunk = bytes(1 << 24)
        with zout.open(info, "w", force_zip64=True) as f:  # streamed: the test itself stays small
            for _ in range(size // len(chunk)):
                f.write(chunk)
        return True

    return _rewrite(src, tmp_path / "inflating.pt", replace)


def test_inflating_model_file_refused_under_1gb(tmp_path):
    path = _inflating_model(tmp_path)
    assert path.stat().st_size < 8e6  # a few MB on disk
    res, peak_gb, _ = run_child(f"""
        from napari_levelset.errors import InputError
        from napari_levelset.nn.model_files import load_model
        try:
            load_model({str(path)!r})
        except InputError as exc:
            print("REFUSED", exc)
    """)
    assert peak_gb < 1.0, (peak_gb, res.stdout)
    assert "REFUSED" in res.stdout, res.stdout + res.stderr[-2000:]
    said = [line for line in res.stdout.strip().splitlines() if not line.startswith("PEAK_KB")]
    assert "weights" in res.stdout and len(said) == 1


def test_inflating_model_file_refused_before_reading(tmp_path):
    path = _inflating_model(tmp_path, size=256 << 20)
    with pytest.raises(InputError, match="compressed weight record"):
        read_model_file(path)


def test_weights_larger_than_their_network_refused_before_reading(tmp_path):
    path = _inflating_model(tmp_path, size=64 << 20, compress=zipfile.ZIP_STORED)
    with pytest.raises(InputError, match="bytes of weights"):
        read_model_file(path)


def _with_metadata(tmp_path, metadata_json: str):
    """A tiny model file whose metadata string is ``metadata_json``."""
    blob = torch.load(_tiny_model(tmp_path / "good.pt"), weights_only=True)
    blob["metadata"] = metadata_json
    out = tmp_path / "nested.pt"
    torch.save(blob, out)
    return out


def test_deeply_nested_model_metadata_refused_in_one_line(tmp_path):
    good = _tiny_model(tmp_path / "good.pt")
    meta = json.loads(torch.load(good, weights_only=True)["metadata"])
    depth = 100_000
    nested = json.dumps(meta)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    path = _with_metadata(tmp_path, nested)
    with pytest.raises(InputError, match="nested") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_moderately_nested_model_metadata_still_loads(tmp_path):
    good = _tiny_model(tmp_path / "good.pt")
    meta = json.loads(torch.load(good, weights_only=True)["metadata"])
    meta["training"] = {"a": [{"b": [1, 2, {"c": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}]}
    path = _with_metadata(tmp_path, json.dumps(meta))
    _, loaded = load_model(path)
    assert loaded["training"] == meta["training"]


def test_shipped_model_still_loads_under_bound():
    _, meta = load_model(pretrained_path("unet"))
    assert meta["architecture"]["levels"] == 3


def test_model_file_that_is_not_a_zip_refused(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"\x80\x02" + bytes(100))
    with pytest.raises(InputError, match="not a napari-levelset model"):
        load_model(path)


def test_absurd_spacing_instances_refused_before_any_work_under_1gb():
    """It used to run for minutes and grow past 1.5 GB: now refused before the image is prepared (the
    refusal is the check; the child's time limit only guards against a hang)."""
    res, peak_gb, _ = run_child(
        """
        import numpy as np
        from napari_levelset import segment
        from napari_levelset.errors import InputError
        image = np.random.default_rng(0).random((16, 16))
        try:
            segment(image, regions="instances", spacing=(1, 1e9), iterations=3)
            print("DONE")
        except InputError as exc:
            print("REFUSED", exc)
    """,
        timeout=300,
    )
    assert peak_gb < 1.0, (peak_gb, res.stdout)
    assert "REFUSED" in res.stdout and "spacing" in res.stdout, res.stdout + res.stderr[-2000:]


def test_huge_diameter_refused():
    image = np.random.default_rng(0).random((16, 16))
    with pytest.raises(InputError, match="diameter"):
        segment(image, regions="instances", diameter=1e300, iterations=3)


def test_huge_diameter_refused_by_the_instance_functions():
    from napari_levelset.post.instances import fluorescence_contrast, instance_labels

    prob = np.zeros((16, 16), np.float32)
    prob[4:12, 4:12] = 1
    with pytest.raises(InputError, match="diameter"):
        instance_labels(prob, diameter=1e300)
    with pytest.raises(InputError, match="diameter"):
        fluorescence_contrast(prob[None, None], diameter=1e300)
    with pytest.raises(InputError, match="spacing"):
        instance_labels(prob, spacing=(1, 1e9))
