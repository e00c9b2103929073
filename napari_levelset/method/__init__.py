"""The level-set method: the loss (``loss``), the k-means start (``cluster``), strokes (``strokes``)
and the per-image optimisation: ``segmenter`` (``Segmenter``, ``Snapshot``), a run rebuilt from a
result layer (``restore``: ``restore_segmenter``), the classes it keeps (``classes``), how a run starts
(``start``), fits in memory (``memory``) and is read (``results``), the run plan that
``segment`` and the napari widget share (``plan``), and the one-call ``segment`` (``segmentation``).
No re-exports: import each name from its module (or the top-level ``napari_levelset.segment`` /
``Segmenter``).
"""
