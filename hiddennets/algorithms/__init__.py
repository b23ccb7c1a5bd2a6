"""Algorithm registry: name -> Algorithm. One line per algorithm."""
from hiddennets.algorithms import baselines, biprop, edge_popup
from hiddennets.algorithms.base import Algorithm

ALGORITHMS: dict[str, Algorithm] = {
    "ep": edge_popup.ALGORITHM,
    "biprop": biprop.ALGORITHM,
    "dense": baselines.DENSE,
    "random_mask": baselines.RANDOM_MASK,
}

__all__ = ["ALGORITHMS", "Algorithm"]
