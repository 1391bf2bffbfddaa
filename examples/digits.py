"""scikit-learn's 8x8 handwritten digits as a benchmark dataset: the "Adding a dataset" example of docs/extending.md.

``BENCH_MODULES=examples.digits make bench DATASET=digits`` (from the project folder) registers it and runs the grid
on it. The digits ship inside scikit-learn (``pip install scikit-learn``): no download, no data folder. They have no
official test split, so a fixed permutation (seed 0) holds out 20% as the test split.
"""

import numpy as np

from bench.data import register_dataset


@register_dataset(
    "digits",
    shape=(1, 8, 8),
    num_classes=10,
    scale=16.0,
    source="scikit-learn's sklearn.datasets.load_digits (ships with scikit-learn)",
)
def load_digits(root, train):
    """1437 training or 360 test images (8 x 8, grey levels 0..16) and their labels 0..9."""
    from sklearn.datasets import load_digits as sklearn_digits

    d = sklearn_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    n_train = round(0.8 * len(order))
    idx = order[:n_train] if train else order[n_train:]
    return d.images[idx].astype(np.uint8), d.target[idx]
