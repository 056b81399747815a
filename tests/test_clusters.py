from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_configs_pass_rays_own_validation():
    # prepare_config fills the provider's defaults, validate_config checks ray-schema.json: what `ray up` does.
    from ray.autoscaler._private.util import prepare_config, validate_config

    configs = sorted((ROOT / "clusters").glob("*.yaml"))
    assert configs
    for path in configs:
        validate_config(prepare_config(yaml.safe_load(path.read_text())))


def test_schema_validation_catches_a_typo():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "clusters" / "local.yaml").read_text())
    config["idle_timeout_minuts"] = 5
    with pytest.raises(Exception, match="idle_timeout_minuts"):
        validate_config(prepare_config(config))


def test_job_runtime_env_parses():
    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and ".venv" in env["excludes"]
