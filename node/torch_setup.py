"""Per-process torch settings for many tiny models sharing a few cores."""

import torch

# Models whose steps run faster with oneDNN. Measured here, one thread, batch 8: a GN-LeNet
# step took 14.8 ms with it and 22.8 ms without; a CNN1D step 2.26 ms with it, 1.30 without
# (its per-call primitive set-up dominates a batch-8 Conv1d).
ONEDNN_MODELS = frozenset({"gn_lenet"})


def configure_torch(threads: int, model: str | None = None) -> None:
    """Pin intra-op threads and use oneDNN only for the models it speeds up (the calibration
    runs in the node processes, so it sees the same setting)."""
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = model in ONEDNN_MODELS


def configure_torch_for_evaluation(threads: int) -> None:
    """An evaluator runs whole test batches, where oneDNN is faster for every model: measured
    here, a CNN1D snapshot on MNIST-1D's 4,000 test samples (batch 256, one thread) took 11.9
    ms of CPU with it and 46.4 ms without, which at 60 nodes was a tenth of the host."""
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = True
