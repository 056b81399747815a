"""Autoscaling: a stage that asks for a GPU makes Ray's autoscaler add a GPU node, runs its actor
pool there, and the node goes away again once idle.

Ray's fake multi-node provider starts worker "nodes" as extra raylets on this machine (their
GPUs are only advertised). The cluster runs in a child process (`python -m tests.test_autoscaling`)
with its own ports and temp dir, because the test session may already hold an in-process Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
TEMP_ENV = "RAYALIGN_AUTOSCALING_TEMP"
IDLE_TIMEOUT_MIN = 0.5  # short for the test; long enough that a loaded machine places the actor first


def test_gpu_stage_scales_a_gpu_node_up_and_down():
    start = time.monotonic()
    temp = tempfile.mkdtemp(prefix="ras-", dir="/tmp")  # short: Ray's socket paths have a length limit
    # Token auth off for the whole child (Ray reads it at import): its head runs without it. The
    # in-process Ray of other tests sets RAY_AUTH_MODE=token in this process's environment.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled",
           TEMP_ENV: temp}
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.test_autoscaling"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=420)
    finally:  # the child tears its cluster down itself, unless it was killed
        _kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert result["gpu_nodes_before"] == 0
    assert result["gpu_node_joined"] and result["scale_up_s"] < 120 and result["request_after"] == []
    assert result["rows"] == 6 and result["actor_nodes"] == [result["gpu_node"]] and result["actor_gpus"] == ["0"]
    assert result["rewards_positive"] and result["rewards_negative"]
    assert result["gpu_node_gone"] and IDLE_TIMEOUT_MIN * 60 - 5 < result["scale_down_s"] < 150
    print(f"autoscaling check: {time.monotonic() - start:.0f}s in all; {result}")


# ---------------------------------------------------------------- the child process

def cluster_config(gcs_address: str) -> dict:
    """The fake multi-node autoscaler config: a 2-CPU head, 0..1 'gpu_worker' nodes of {CPU: 1, GPU: 1}.

    Provider type 'external' with the fake provider's class, not 'fake_multinode': the latter
    reads defaults from an example.yaml the Ray wheel does not ship.
    """
    return {
        "cluster_name": f"rayalign-autoscaling-{os.getpid()}",
        "max_workers": 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": gcs_address,  # worker raylets join this head, not 127.0.0.1:6379
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 200 * 1024**2},
                           "node_config": {}, "min_workers": 0, "max_workers": 1},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def _gpu_nodes(ray) -> list[str]:
    return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")]


def _kill_cluster(temp: str) -> None:
    # Only processes of this cluster (their command lines name its temp dir): `ray stop` would
    # end every Ray on the machine, including other tests'.
    for _ in range(3):
        pids = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
        pids = [int(p) for p in pids if int(p) != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)


def child() -> dict:
    import ray

    from rayalign.actors.rewards import VaderReward
    from rayalign.actors.runtime import map_with_actors
    from rayalign.config import load_config
    from rayalign.pipeline.resources import ensure_resources
    from rayalign.pipeline.stages import score

    class VaderWhere(VaderReward):
        """VADER scores plus the node the actor runs on and the GPU ids Ray gave it."""

        def __call__(self, batch):
            import pyarrow as pa

            batch = super().__call__(batch)
            where = ray.get_runtime_context()
            node, gpus = where.get_node_id(), ",".join(map(str, where.get_accelerator_ids().get("GPU", [])))
            batch = batch.append_column("gpus", pa.array([gpus] * batch.num_rows, pa.string()))
            return batch.append_column("node", pa.array([node] * batch.num_rows, pa.string()))

    result = {}
    cfg = load_config("default", ["score.resources={min_actors: 1, max_actors: 1, num_cpus: 1, num_gpus: 1, "
                                  "batch_size: 2}", "ray.resource_wait_s=120"])
    bundles = score.STAGE.bundles(cfg)
    assert bundles == [{"CPU": 1.0, "GPU": 1.0}], bundles
    result["gpu_nodes_before"] = len(_gpu_nodes(ray))

    t0 = time.monotonic()
    ensure_resources(bundles, cfg.ray.resource_wait_s, "score")
    result["scale_up_s"] = round(time.monotonic() - t0, 1)
    # The standing autoscaler request (autoscaler v1 keeps it in the GCS KV store) is withdrawn.
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    result["request_after"] = json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL) or b"null")
    gpu = _gpu_nodes(ray)
    result["gpu_node_joined"] = len(gpu) == 1
    result["gpu_node"] = gpu[0] if gpu else None

    texts = ["a wonderful, brilliant film", "I love it", "the best acting", "terrible and boring",
             "awful, I hate it", "the worst plot"]
    ds = ray.data.from_items([{"prompt_id": f"p{i}", "response": t} for i, t in enumerate(texts)])
    rows = map_with_actors(ds, VaderWhere, {}, cfg.score.resources).take_all()
    result["rows"] = len(rows)
    result["actor_nodes"] = sorted({r["node"] for r in rows})
    result["actor_gpus"] = sorted({r["gpus"] for r in rows})
    reward = {r["response"]: r["reward"] for r in rows}
    result["rewards_positive"] = all(reward[t] > 0.3 for t in texts[:3])
    result["rewards_negative"] = all(reward[t] < -0.3 for t in texts[3:])

    # With the request withdrawn (Ray Data's own, merged by its coordinator, too) and the actor
    # gone, the node is idle.
    t0 = time.monotonic()
    while _gpu_nodes(ray) and time.monotonic() - t0 < 150:
        time.sleep(2)
    result["scale_down_s"] = round(time.monotonic() - t0, 1)
    result["gpu_node_gone"] = not _gpu_nodes(ray)
    return result


def start_head(temp: str, config: Path, env: dict) -> str:
    """`ray start --head` with the autoscaler on ports of its own; its GCS address."""
    errors = []
    # On a loaded machine the raylet can give up waiting (~15 s) for its agents: start afresh.
    for _ in range(3):
        gcs = f"127.0.0.1:{free_port()}"
        config.write_text(json.dumps(cluster_config(gcs)))
        started = subprocess.run(
            [RAY, "start", "--head", f"--port={gcs.rsplit(':', 1)[1]}", "--node-ip-address=127.0.0.1",
             f"--autoscaling-config={config}", "--num-cpus=2", "--object-store-memory=200000000",
             f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats",
             # Ports of its own: another Ray on this machine may hold the default ones.
             *(f"--{flag}={free_port()}" for flag in (
                 "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                 "runtime-env-agent-port", "node-manager-port", "object-manager-port", "ray-client-server-port"))],
            env=env, timeout=240, capture_output=True, text=True)
        if started.returncode == 0:
            return gcs
        errors.append(started.stderr[-2000:])
        _kill_cluster(temp)
    raise RuntimeError("ray start failed three times:\n" + "\n".join(errors))


def main() -> int:
    os.environ["RAY_AUTH_MODE"] = "disabled"  # head and driver alike, set before Ray is imported
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    temp = os.environ.get(TEMP_ENV) or tempfile.mkdtemp(prefix="ras-", dir="/tmp")
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        gcs = start_head(temp, Path(temp) / "autoscaling.json", env)
        ray.init(address=gcs, logging_level="WARNING", log_to_driver=False)
        result = child()
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    except BaseException:
        for log in sorted(Path(temp).glob("session_latest/logs/monitor.*")):
            print(f"--- {log.name}\n" + log.read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        ray.shutdown()
        _kill_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
