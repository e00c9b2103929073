"""``python -m napari_levelset.cli``: the same as the ``napari-levelset`` command."""

from napari_levelset.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
