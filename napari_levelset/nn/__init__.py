"""The networks: the per-image CNN (``models``), the U-Net (``unet``), the network a run uses for a
pretrained U-Net (``pretrained``), model files and the shipped weights (``model_files``), tiled
inference (``tiling``) and the choice of torch device (``devices``).  Importing these imports torch.
"""
