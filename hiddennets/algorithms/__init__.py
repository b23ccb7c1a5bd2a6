"""Algorithm registry: name -> Algorithm. One line per algorithm."""
from hiddennets.algorithms import baselines, biprop, dnw, edge_popup, gem_miner, imp, pab
from hiddennets.algorithms.base import Algorithm, Phase

ALGORITHMS: dict[str, Algorithm] = {
    "ep": edge_popup.ALGORITHM,
    "biprop": biprop.ALGORITHM,
    "gem_miner": gem_miner.GEM_MINER,
    "hc": gem_miner.HC,
    "dnw": dnw.ALGORITHM,
    "pab": pab.ALGORITHM,
    "imp": imp.ALGORITHM,
    "dense": baselines.DENSE,
    "random_mask": baselines.RANDOM_MASK,
}



def total_epochs(cfg) -> int:
    """Epochs over all of the run's phases (what `completed` means, and ASHA's max_t)."""
    return sum(phase.epochs for phase in ALGORITHMS[cfg.algo].phases(cfg))


__all__ = ["ALGORITHMS", "Algorithm", "Phase", "total_epochs"]
