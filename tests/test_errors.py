"""One rule for what the user is told: the CLI and the widget say the same about the same failure."""

import errno

import pytest

from napari_levelset.cli._report import error_message as cli_message
from napari_levelset.errors import InputError, command_message, user_message


@pytest.mark.parametrize(
    "exc, expected",
    [
        (InputError("the image is\n   constant"), "the image is constant"),
        (OSError(errno.ENOSPC, "No space left on device", "out.tif"), "No space left on device: out.tif"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "ADVICE"),
        (MemoryError(), "ADVICE"),
        (RuntimeError("shapes cannot be multiplied\nmore detail"), "shapes cannot be multiplied"),
        (ValueError("a bug"), None),
    ],
)
def test_one_line_per_kind_of_failure(exc, expected):
    assert user_message(exc, "ADVICE") == expected


def test_the_command_and_the_widget_say_the_same():
    pytest.importorskip("qtpy")
    from napari_levelset.errors import widget_message

    for exc in (
        InputError("n_classes must be a whole number in 2..65535, got 1"),
        OSError(errno.EACCES, "Permission denied", "/root/x.tif"),
        RuntimeError("could not run the kernel\ntraceback follows"),
    ):
        status, line = cli_message(exc, prog="napari-levelset")
        assert line == f"napari-levelset: error: {widget_message(exc)}"
        assert status == (1 if type(exc) is RuntimeError else 2)
    oom = RuntimeError("DefaultCPUAllocator: can't allocate memory")
    assert "--max-pixels" in cli_message(oom)[1] and "network width" in widget_message(oom)


def test_a_batch_and_the_command_word_a_failure_alike():
    exc = InputError("no such file: a.tif")
    assert command_message(exc) == cli_message(exc)[1] == "napari-levelset: error: no such file: a.tif"
    assert command_message(KeyError("x")) is None
