"""After the optimisation: class labels as connected or merged regions (``regions``) and as one label
per object (``instances``, with the fluorescence contrast and object-diameter estimate it uses;
``objects``: dark or bright objects, dark ones made bright, outlines on the linear signal).
Numpy, scipy and scikit-image only: no torch.
"""
