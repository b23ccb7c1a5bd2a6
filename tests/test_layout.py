"""Boundaries the design fixes: the library never imports Ray, and reads no config at import."""
import subprocess
import sys

from tests.conftest import REPO


def test_hiddennets_never_imports_ray():
    sources = list((REPO / "hiddennets").rglob("*.py"))
    assert sources
    offenders = [str(p) for p in sources if any(line.strip().startswith(("import ray", "from ray"))
                                                for line in p.read_text().splitlines())]
    assert offenders == []
    code = "import sys, hiddennets, hiddennets.engine; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_the_cli_modules_parses_no_arguments():
    code = "import sys; sys.argv = ['x', '--bogus']; import pipeline.run, pipeline.bench; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
