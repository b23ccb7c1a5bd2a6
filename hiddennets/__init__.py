"""hiddennets: find and study hidden subnetworks inside randomly weighted neural networks.

    from hiddennets import load_config, train, build_model
    cfg = load_config("sweeps/quickstart.yaml", density=0.3, algo="ep")
    result = train(cfg)          # final metrics; outputs under the run folder
    model = build_model(cfg)     # any arch with the algorithm's layers plugged in
    masks = prune(model, "synflow", 0.3, input_shape=(1, 8, 8))   # pruning at init, exact density

This package never imports Ray; orchestration lives in `pipeline`.
"""
from hiddennets.build import build_model
from hiddennets.config import RunConfig
from hiddennets.engine import train
from hiddennets.errors import ConfigError
from hiddennets.identity import config_hash
from hiddennets.masks import kept_count, topk_mask
from hiddennets.pruners import prune
from hiddennets.validation import config_from_dict, load_config

__all__ = ["ConfigError", "RunConfig", "build_model", "config_from_dict", "config_hash", "kept_count",
           "load_config", "prune", "topk_mask", "train"]
__version__ = "0.1.0"
