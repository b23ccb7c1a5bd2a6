"""cluster.yaml validated offline by Ray's own cluster-config schema, and its safety settings."""
import copy

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import REPO


def load():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema():
    config = prepare_config(load())  # fills Ray's defaults, as `ray up` does
    validate_config(config)          # raises on any schema violation
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"].get("GPU", 0) == 0       # CPU head
    gpu_workers = [n for name, n in nodes.items() if name != config["head_node_type"]]
    assert gpu_workers and all(n["resources"]["GPU"] >= 1 and n["min_workers"] == 0 and n["max_workers"] > 0
                               for n in gpu_workers)                              # autoscaling GPU workers


def test_the_schema_check_catches_a_broken_config():
    broken = copy.deepcopy(load())
    broken["available_node_types"]["worker.gpu"]["resources"] = {"GPU": 0.5}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_nodes_install_this_project_and_the_dashboard_stays_private():
    config = load()
    assert config["file_mounts"]["~/hiddennets"] == "."
    assert any("pip install -e ~/hiddennets" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    text = (REPO / "cluster.yaml").read_text().lower()
    assert "aws_secret_access_key" not in text and "aws_access_key_id" not in text
