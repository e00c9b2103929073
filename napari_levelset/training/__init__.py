"""U-Net training with the level-set loss (``train``) and where it writes (``outputs``)."""
