"""Algorithm registry: name -> Algorithm. One line per algorithm below; a module elsewhere (a plugin,
a test) adds its own with one `register(...)` call."""
from hiddennets.algorithms import baselines, biprop, dnw, edge_popup, gem_miner, imp, pab
from hiddennets.algorithms.base import Algorithm, Phase, TwoPhaseReport

ALGORITHMS: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Add `algorithm` under its name (registering the same object twice is harmless). Algorithms
    may share a config section (gem_miner and hc) only with the same options dataclass."""
    known = ALGORITHMS.get(algorithm.name)
    if known is not None and known is not algorithm:
        raise ValueError(f"algorithm '{algorithm.name}' is already registered")
    for other in ALGORITHMS.values():
        if other.section == algorithm.section and other.options is not algorithm.options and other is not known:
            raise ValueError(f"config section '{algorithm.section}' of '{algorithm.name}' is already '{other.name}'s")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


for _algorithm in (edge_popup.ALGORITHM, biprop.ALGORITHM, gem_miner.GEM_MINER, gem_miner.HC, dnw.ALGORITHM,
                   pab.ALGORITHM, imp.ALGORITHM, baselines.DENSE, baselines.RANDOM_MASK):
    register(_algorithm)


def sections() -> dict[str, type]:
    """Every config section the registered algorithms declare: section name -> options dataclass."""
    return {a.section: a.options for a in ALGORITHMS.values() if a.options is not None}


def total_epochs(cfg) -> int:
    """Epochs over all of the run's phases (what `completed` means, and ASHA's max_t)."""
    return sum(phase.epochs for phase in ALGORITHMS[cfg.algo].phases(cfg))


__all__ = ["ALGORITHMS", "Algorithm", "Phase", "TwoPhaseReport", "register", "sections", "total_epochs"]
