"""U-Net training with the level-set loss (``train``): its images and label files (``data``), the label
rule (``labels``), where a run starts (``start``), its checkpoints (``checkpoints``) and where it writes
(``outputs``)."""
