"""The command line, ``napari-levelset segment|train``: a parser over the library.

``main`` dispatches; ``segment`` and ``train`` hold the commands; ``_args`` the parser helpers
and the flags generated from ``napari_levelset.settings.SPEC``; ``_report`` the one-line
errors and exit statuses.  The library never imports this package.
"""
