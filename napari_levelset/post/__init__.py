"""After the optimisation: class labels as connected or merged regions (``regions``) and as one label
per object (``instances``, with the fluorescence contrast it uses; ``diameter``: the checks of
``spacing`` and ``diameter``, the diameter estimated before a run and measured on what it found;
``objects``: dark or bright objects, dark ones made bright, outlines on the linear signal, convex ones
kept).
Numpy, scipy and scikit-image only: no torch.
"""
