import copy
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

from rayalign.cli import build_parser
from rayalign.config import load_config, preset_names

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
CLOUD_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
KUBERAY = CLUSTERS / "kuberay"
SHARED = "/srv/rayalign"


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def _ray_validate(config: dict) -> None:
    # What `ray up` checks before it talks to a cloud. prepare_config only merges the provider's
    # packaged defaults.yaml (aws/gcp: no boto3 or Google client import, no network), then
    # validate_config checks ray-schema.json; the provider's bootstrap, which calls the cloud, is left out.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_configs_pass_rays_own_validation():
    configs = sorted(CLUSTERS.glob("*.yaml"))
    assert {"local.yaml", *CLOUD_CONFIGS} <= {p.name for p in configs}
    for path in configs:
        _ray_validate(yaml.safe_load(path.read_text()))


def test_schema_validation_catches_a_typo():
    for name in ("local.yaml", *CLOUD_CONFIGS):
        config = _load(name)
        config["idle_timeout_minuts"] = 5
        with pytest.raises(Exception, match="idle_timeout_minuts"):
            _ray_validate(config)


def launcher_problems(config: dict) -> list[str]:
    """What keeps a cloud launcher config from scaling GPU workers between zero and a bound."""
    problems = []
    if not config.get("idle_timeout_minutes", 0) > 0:
        problems.append("idle_timeout_minutes is not set: idle GPU workers would never be removed")
    head = config["head_node_type"]
    workers = {name: t for name, t in config["available_node_types"].items() if name != head}
    if not workers:
        problems.append("no worker node type")
    for name, node_type in workers.items():
        resources = node_type.get("resources", {})
        if not (resources.get("GPU", 0) > 0 and resources.get("CPU", 0) > 0):
            problems.append(f"{name}: resources must declare its CPUs and GPUs for the autoscaler to plan")
        if node_type.get("min_workers", 0) != 0:
            problems.append(f"{name}: min_workers must be 0 (scale to zero)")
        if not node_type.get("max_workers", 0) > 0:
            problems.append(f"{name}: max_workers must be > 0")
        # Without the head's shared volume, actors on the worker cannot read the run directory.
        if not any(f"$RAY_HEAD_IP:{SHARED}" in cmd for cmd in node_type.get("initialization_commands", [])):
            problems.append(f"{name}: does not mount the head's {SHARED}")
        if config["provider"]["type"] == "gcp" and \
                node_type["node_config"].get("scheduling", {}).get("onHostMaintenance") != "TERMINATE":
            problems.append(f"{name}: GCP GPU VMs need scheduling: {{onHostMaintenance: TERMINATE}}")
    if sum(t.get("max_workers", 0) for t in workers.values()) > config["max_workers"]:
        problems.append("the global max_workers is below the sum of the worker types' max_workers")
    images = [config["docker"].get(k) for k in ("image", "head_image", "worker_image") if config["docker"].get(k)]
    if not images or any(not i.startswith(f"rayproject/ray:{ray.__version__}-py311") for i in images):
        problems.append(f"docker images {images} are not the official rayproject/ray {ray.__version__} py311 ones")
    if f"-v {SHARED}:{SHARED}" not in config["docker"].get("run_options", []):
        problems.append(f"containers do not see {SHARED}")
    return problems


@pytest.mark.parametrize("name", CLOUD_CONFIGS)
def test_cloud_gpu_workers_autoscale_from_zero(name):
    assert launcher_problems(_load(name)) == []


@pytest.mark.parametrize("name", CLOUD_CONFIGS)
def test_launcher_check_catches_a_gpu_worker_that_never_scales_down(name):
    config = _load(name)
    del config["idle_timeout_minutes"]
    config["available_node_types"]["gpu_small"]["min_workers"] = 1
    config["available_node_types"]["gpu_train"]["resources"].pop("GPU")
    problems = " | ".join(launcher_problems(config))
    assert "idle_timeout_minutes" in problems
    assert "gpu_small: min_workers" in problems
    assert "gpu_train: resources" in problems


def _kuberay(name: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]
    return {d["kind"]: d for d in docs}


def _gpus(group: dict) -> int:
    return int(group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))


def raycluster_problems(spec: dict) -> list[str]:
    """What keeps a RayCluster spec from autoscaling GPU worker groups and serving Ray Jobs."""
    problems = []
    if spec.get("rayVersion") != ray.__version__:
        problems.append(f"rayVersion {spec.get('rayVersion')!r} is not Ray {ray.__version__}")
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append("enableInTreeAutoscaling is not true")
    if not spec.get("autoscalerOptions", {}).get("idleTimeoutSeconds", 0) > 0:
        problems.append("autoscalerOptions.idleTimeoutSeconds is not set")
    head = spec["headGroupSpec"]
    if head.get("rayStartParams", {}).get("dashboard-host") != "0.0.0.0":
        problems.append("the head's rayStartParams lack dashboard-host: 0.0.0.0 (the Jobs API)")
    groups = spec.get("workerGroupSpecs", [])
    if not groups:
        problems.append("no worker group")
    for group in groups:
        name = group.get("groupName")
        lo, hi = group.get("minReplicas"), group.get("maxReplicas", 0)
        if lo != 0 or not hi > 0:
            problems.append(f"{name}: needs minReplicas 0 and maxReplicas > 0 (got {lo}, {hi})")
        if not (lo or 0) <= group.get("replicas", lo or 0) <= hi:
            problems.append(f"{name}: replicas outside [minReplicas, maxReplicas]")
        params = group.get("rayStartParams", {})
        if any(not isinstance(v, str) for v in params.values()):
            problems.append(f"{name}: rayStartParams values must be strings")
        if not _gpus(group) > 0:
            problems.append(f"{name}: no nvidia.com/gpu limit")
        elif "num-gpus" in params and int(params["num-gpus"]) != _gpus(group):
            problems.append(f"{name}: num-gpus {params['num-gpus']} != nvidia.com/gpu limit {_gpus(group)}")
    for pod in [head, *groups]:
        for container in pod["template"]["spec"]["containers"]:
            if f"ray{ray.__version__}" not in container["image"]:
                problems.append(f"image {container['image']} is not built for Ray {ray.__version__}")
            if SHARED not in [m["mountPath"] for m in container.get("volumeMounts", [])]:
                problems.append(f"{container['name']}: {SHARED} is not mounted")
    return problems


def test_kuberay_raycluster_autoscales_gpu_groups_from_zero():
    docs = _kuberay("raycluster.yaml")
    assert docs["RayCluster"]["apiVersion"] == "ray.io/v1"
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert raycluster_problems(docs["RayCluster"]["spec"]) == []


def test_raycluster_check_catches_what_breaks_autoscaling():
    spec = copy.deepcopy(_kuberay("raycluster.yaml")["RayCluster"]["spec"])
    spec["autoscalerOptions"].pop("idleTimeoutSeconds")
    spec["headGroupSpec"]["rayStartParams"].pop("dashboard-host")
    small, train = spec["workerGroupSpecs"]
    small["minReplicas"] = 1
    small["rayStartParams"]["num-gpus"] = "2"
    train["template"]["spec"]["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu")
    problems = " | ".join(raycluster_problems(spec))
    for expected in ("idleTimeoutSeconds", "dashboard-host", "gpu-small: needs minReplicas 0",
                     "gpu-small: num-gpus 2 != nvidia.com/gpu limit 1", "gpu-train: no nvidia.com/gpu"):
        assert expected in problems


def _cli(argv: list[str]):
    """argv after the program name, parsed by rayalign's own parser as `rayalign.cli.main` does."""
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) and "=" in args.config:
        args.overrides.insert(0, args.config)
        args.config = None
    return args


def rayalign_command_problems(argv: list[str]) -> list[str]:
    """Whether argv is a `rayalign run|submit` whose preset exists and whose overrides validate."""
    if argv[:1] != ["rayalign"] or argv[1:2] not in (["run"], ["submit"]):
        return [f"{shlex.join(argv)!r} is not a rayalign run/submit command"]
    args = _cli(argv[1:])
    if args.config not in preset_names():
        return [f"preset {args.config!r} does not exist ({', '.join(preset_names())})"]
    load_config(args.config, args.overrides)
    if not (args.run_dir or "").startswith(SHARED + "/"):
        return [f"the run directory {args.run_dir!r} is not on the shared {SHARED}"]
    return []


def test_kuberay_rayjob_runs_a_preset_on_an_autoscaling_cluster_it_deletes():
    docs = _kuberay("rayjob.yaml")
    job = docs["RayJob"]["spec"]
    assert docs["RayJob"]["apiVersion"] == "ray.io/v1"
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] >= 0
    assert isinstance(yaml.safe_load(job["runtimeEnvYAML"]), dict)
    assert rayalign_command_problems(shlex.split(job["entrypoint"])) == []
    assert raycluster_problems(job["rayClusterSpec"]) == []
    # One cluster definition: the RayJob's stays the RayCluster's.
    assert job["rayClusterSpec"] == _kuberay("raycluster.yaml")["RayCluster"]["spec"]
    assert docs["PersistentVolumeClaim"] == _kuberay("raycluster.yaml")["PersistentVolumeClaim"]


def test_command_check_catches_an_unknown_preset_and_a_local_run_dir():
    assert "preset 'gpuu' does not exist" in rayalign_command_problems(
        ["rayalign", "run", "gpuu", "--run-dir", f"{SHARED}/runs/x"])[0]
    assert "not on the shared" in rayalign_command_problems(["rayalign", "run", "gpu"])[0]
    with pytest.raises(Exception, match="resource_wait"):
        rayalign_command_problems(["rayalign", "run", "gpu", "ray.resource_wait=5", "--run-dir", f"{SHARED}/r"])


def test_dockerfile_builds_on_the_official_image_of_the_pinned_ray():
    lines = (CLUSTERS / "Dockerfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("FROM ")] == [f"FROM rayproject/ray:{ray.__version__}-py311-gpu"]


def test_job_runtime_envs_parse():
    from ray.runtime_env import RuntimeEnv

    for path in sorted((ROOT / "jobs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert set(env) <= RuntimeEnv.known_fields, path.name
        RuntimeEnv(**env)  # type checks, e.g. env_vars values must be strings
        assert env["working_dir"] == "." and ".venv" in env["excludes"]
    with pytest.raises(TypeError):
        RuntimeEnv(env_vars={"RAYALIGN_CACHE": 1})


def _job_script_argv(script: Path, tmp_path: Path, *args: str, env: dict | None = None) -> list[str]:
    """Run a jobs/ script against a stand-in `rayalign` that records its arguments."""
    shim = tmp_path / "bin" / "rayalign"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "argv"}\n')
    shim.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAYALIGN_")},
           "PATH": f"{shim.parent}:{os.environ['PATH']}", "RAY_ADDRESS": "http://head:8265", **(env or {})}
    subprocess.run(["bash", str(script), *args], check=True, env=env, timeout=30)
    return ["rayalign", *(tmp_path / "argv").read_text().splitlines()]


JOB_SCRIPTS = sorted(p.name for p in (ROOT / "jobs").glob("*.sh"))


@pytest.mark.parametrize("name", JOB_SCRIPTS)
def test_job_scripts_submit_a_valid_preset_to_the_given_cluster(name, tmp_path):
    script = ROOT / "jobs" / name
    assert os.access(script, os.X_OK)
    argv = _job_script_argv(script, tmp_path, "sample.k=4")
    args = _cli(argv[1:])
    assert args.command == "submit" and args.address == "http://head:8265" and args.wait
    assert args.overrides[-1] == "sample.k=4"
    assert rayalign_command_problems(argv) == []


def test_chain_script_moves_every_model_to_gpus_on_request(tmp_path):
    script = ROOT / "jobs" / "rs_dpo_chain.sh"
    configs = {}
    for mode in ("0", "1"):
        argv = _job_script_argv(script, tmp_path, env={"RAYALIGN_GPU": mode})
        assert rayalign_command_problems(argv) == []
        args = _cli(argv[1:])
        configs[mode] = load_config(args.config, args.overrides)
    for mode, cfg in configs.items():
        on_gpu = [cfg.sample.resources.num_gpus > 0, cfg.score.resources.num_gpus > 0,
                  *(s.resources.use_gpu for s in (cfg.sft, cfg.reward_model, cfg.train))]
        assert on_gpu == [mode == "1"] * 5


def test_job_script_check_catches_a_misspelt_preset(tmp_path):
    script = tmp_path / "typo.sh"
    script.write_text((ROOT / "jobs" / "gpu_rs_dpo.sh").read_text().replace("submit gpu ", "submit gpuu "))
    argv = _job_script_argv(script, tmp_path)
    assert "preset 'gpuu' does not exist" in rayalign_command_problems(argv)[0]
