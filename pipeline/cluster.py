"""Checks made before any trial starts: storage is writable, some node can run a trial's workers."""
from __future__ import annotations

import os
import sys
import time
import uuid

from hiddennets.errors import ConfigError
from pipeline.spec import ResourcesConfig
from pipeline.storage import filesystem, is_uri


# Set by Ray's job supervisor in the environment of a `ray job submit` entrypoint.
RAY_JOB_MARKER = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def refuse_relative_storage_in_job(location: str, key: str) -> None:
    """Under `ray job submit --working-dir`, the driver's working folder is Ray's temporary copy of the
    package (<Ray temp>/session_*/runtime_resources/working_dir_files/_ray_pkg_*), deleted with the Ray
    session: a relative storage there would hide earlier results and lose these."""
    if RAY_JOB_MARKER not in os.environ or is_uri(location) or os.path.isabs(os.path.expanduser(location)):
        return
    raise ConfigError(f"{key}: '{location}' is relative, and this sweep runs as a Ray job whose working folder "
                      f"{os.getcwd()} is Ray's temporary copy, deleted with the Ray session; pass an absolute "
                      "path (--storage /shared/results) or s3://bucket/prefix")


def check_storage(location: str) -> str:
    """Create the storage folder if needed and prove it is writable; return it absolute (or the URI)."""
    fs, path = filesystem(location)
    probe = f"{path}/.write-probe-{uuid.uuid4().hex}"
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as fh:
            fh.write(b"ok")
        fs.delete_file(probe)
    except Exception as exc:  # pyarrow raises OSError subclasses, and ArrowInvalid for a bad URI
        code = getattr(exc, "errno", None)  # pyarrow's messages repeat the path; the errno says it shortly
        reason = os.strerror(code) if code else str(exc)
        raise ConfigError(f"storage: cannot write to {location if is_uri(location) else path} ({reason})") from None
    return location if is_uri(location) else path


def _fits(node: dict, resources: ResourcesConfig) -> int:
    """How many of a trial's workers one node can hold at most."""
    have = node.get("Resources", {})
    counts = []
    if resources.cpus_per_worker:
        counts.append(int(have.get("CPU", 0) // resources.cpus_per_worker))
    if resources.gpus_per_worker:
        counts.append(int(have.get("GPU", 0) // resources.gpus_per_worker))
    return min(counts)


def check_resources(resources: ResourcesConfig, wait_s: float = 0.0) -> None:
    """Fail at once (or after waiting `wait_s` for an autoscaler) if no trial could ever be placed."""
    import ray

    deadline = time.time() + wait_s
    while True:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        capacity = sum(_fits(n, resources) for n in nodes)
        if capacity >= resources.workers_per_trial:
            return
        if time.time() >= deadline:
            break
        time.sleep(5)
    largest = max(nodes, key=lambda n: (n["Resources"].get("GPU", 0), n["Resources"].get("CPU", 0)), default=None)
    have = largest["Resources"] if largest else {}
    raise ConfigError(
        f"resources: a trial needs {resources.workers_per_trial} worker(s) of {resources.cpus_per_worker:g} CPU"
        f" and {resources.gpus_per_worker:g} GPU, but the cluster's {len(nodes)} node(s) can hold {capacity}"
        f" (largest node: {have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU); lower resources.* "
        f"or add nodes (--wait-for-nodes SECONDS lets an autoscaler bring them)")


def max_concurrent(resources: ResourcesConfig) -> int:
    """How many trials fit at once on the live nodes (Tune would otherwise start every trial's driver)."""
    import ray

    capacity = sum(_fits(n, resources) for n in ray.nodes() if n.get("Alive"))
    return max(1, capacity // resources.workers_per_trial)


def use_cluster_token() -> None:
    """Joining a cluster: present its auth token. Ray >= 2.59 protects clusters started with `ray start
    --head` by a token (in ~/.ray/auth_token), but a client only sends it in token mode; we switch that
    on when a token is at hand, rather than ever turning authentication off."""
    has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or os.path.isfile(os.path.expanduser("~/.ray/auth_token")))
    if has_token:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


TOKEN_FILE = "~/.ray/auth_token"


def token_permission_problem(path: str = TOKEN_FILE) -> str | None:
    """One line if Ray's auth token can be read by other users of this machine (Ray writes it 0644)."""
    full = os.path.expanduser(path)
    try:
        mode = os.stat(full).st_mode & 0o777
    except OSError:
        return None
    if mode & 0o077:
        return (f"warning: {path} is readable by other users (mode {mode:04o}): anyone here can then control the "
                f"cluster; run chmod 600 {path}")
    return None


def warn_token_permissions() -> None:
    problem = token_permission_problem()
    if problem:
        print(problem, file=sys.stderr, flush=True)
