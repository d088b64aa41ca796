"""Local (in-process, PyTorch) scoring backends."""
