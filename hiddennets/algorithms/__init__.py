"""Algorithm registry: name -> Algorithm. One line per algorithm."""
from hiddennets.algorithms import baselines, edge_popup
from hiddennets.algorithms.base import Algorithm

ALGORITHMS: dict[str, Algorithm] = {
    "ep": edge_popup.ALGORITHM,
    "dense": baselines.DENSE,
    "random_mask": baselines.RANDOM_MASK,
}

__all__ = ["ALGORITHMS", "Algorithm"]
