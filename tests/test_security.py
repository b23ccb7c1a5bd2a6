"""Security: no credentials in specs or results, Ray's token authentication never turned off, the
dashboard private. (Tampered checkpoints: tests/test_faults.py.)"""
from __future__ import annotations

import os
import re

import pytest
import yaml

from pipeline.cli import run_main
from pipeline.cluster import use_cluster_token
from pipeline.sweep import main as sweep_command
from tests.conftest import REPO
from tests.test_sweep import write_spec


@pytest.mark.parametrize("storage", ["s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/prefix",
                                     "s3://bucket/prefix?access_key=AKIAEXAMPLE&secret_key=wJalrXUtnFEMI",
                                     "s3://bucket/prefix?session_token=abc"])
def test_storage_uris_carrying_credentials_are_refused_before_anything_is_written(tmp_path, capsys, storage):
    spec = write_spec(tmp_path, "creds", storage=storage)
    assert run_main(sweep_command, [str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: storage: the URI carries credentials") and err.count("\n") == 1
    assert "wJalrXUtnFEMI" not in err and "AKIAEXAMPLE" not in err  # not even echoed back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["creds.yaml"]


def test_no_shipped_spec_or_cluster_file_holds_credentials():
    pattern = re.compile(r"(aws_secret_access_key|aws_access_key_id|AKIA[0-9A-Z]{12,}|secret_key|://[^/\s]*:[^/\s]*@)",
                         re.I)
    files = sorted((REPO / "sweeps").glob("*.yaml")) + [REPO / "cluster.yaml"]
    for path in files:
        assert not pattern.search(path.read_text()), path


def test_token_authentication_is_only_ever_switched_on(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    use_cluster_token()  # no token at hand: leave Ray's default alone
    assert "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t")
    use_cluster_token()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    # and nothing in the code or the cluster file turns authentication off
    sources = list((REPO / "pipeline").glob("*.py")) + list((REPO / "hiddennets").rglob("*.py")) + \
        [REPO / "cluster.yaml"]
    for path in sources:
        text = path.read_text()
        assert not re.search(r"RAY_AUTH_MODE[\"']?\s*[,=:]\s*[\"']?disabled", text), path
        assert "--disable-auth" not in text, path


def test_the_dashboard_is_reachable_only_through_the_ray_cli_tunnel():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start --head" in command:
            assert "--dashboard-host=127.0.0.1" in command
        assert "0.0.0.0" not in command
    # no security group of ours opens a port to the internet (Ray's default one allows SSH only)
    for node in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node["node_config"]
    assert "security_group" not in config["provider"]
