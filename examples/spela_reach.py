"""Why SPELA's seeds scatter on 784-1024-10: how close a ReLU output layer can come to its class vectors.

SPELA(O) reads the prediction out of the last layer as the class vector nearest (in cosine) to the layer's output.
On ``mlp:1024-C`` that layer has C = 10 units with a ReLU, so its output h is non-negative, while the C class vectors
of width 10 are the vertices of a regular simplex in a random rotation (drawn from the run's seed): each has negative
entries. The best cosine a non-negative h reaches with a unit vector v is ||v+|| (the norm of v's positive part), so a
class whose vector points mostly into negative coordinates can hardly be predicted, and which classes those are
depends on the seed. At width 34 (SPELA's own 784-1000-34) and 1024 the spread over seeds shrinks.

    python examples/spela_reach.py     # per width: the worst class's reachable cosine for run seeds 0-9
"""

from __future__ import annotations

import lightning as L
import torch

from methods.shared.class_vectors import class_vectors


def worst_reach(width: int, run_seed: int, layer: int) -> float:
    """The smallest ||v+|| over the classes of layer ``layer``'s vectors, drawn as SPELA draws them for ``run_seed``."""
    L.seed_everything(run_seed, verbose=False)
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # as methods/spela.py draws the vectors' seed
    v = class_vectors(10, width, seed + layer)
    return float(v.clamp_min(0).norm(dim=1).min())


def main() -> None:
    for width, layer in ((10, 1), (34, 1), (1024, 0)):
        worst = [worst_reach(width, s, layer) for s in range(10)]
        print(
            f"width {width:5d}: worst class's best cosine, seeds 0-9: "
            + " ".join(f"{w:.2f}" for w in worst)
            + f" | min {min(worst):.2f}, max {max(worst):.2f}"
        )


if __name__ == "__main__":
    main()
