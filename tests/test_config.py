import pytest

from rayalign.config import ConfigError, flatten, load_config, preset_names


def test_default_preset_loads_and_validates():
    cfg = load_config("default")
    assert "default" in preset_names()
    assert cfg.select.strategy == "rs_dpo" and cfg.select.eta == 0.85
    assert cfg.data.prompts == "builtin:movie_reviews"


def test_overrides_are_parsed_as_yaml_values():
    cfg = load_config("default", ["sample.k=3", "train.learning_rate=2e-6", "sample.resources.max_actors=4",
                                  "model.reference=null"])
    assert cfg.sample.k == 3 and cfg.train.learning_rate == 2e-6
    assert cfg.sample.resources.max_actors == 4 and cfg.model.reference is None


def test_typo_in_key_names_the_key_and_suggests_the_fix():
    with pytest.raises(ConfigError) as err:
        load_config("default", ["sample.temprature=0.7"])
    msg = str(err.value)
    assert "sample.temprature" in msg and "did you mean 'temperature'" in msg


def test_typo_in_section_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'sampel'"):
        load_config("default", ["sampel.k=3"])


def test_bad_value_names_field_and_value():
    with pytest.raises(ConfigError, match=r"sample\.k.*got 0"):
        load_config("default", ["sample.k=0"])


def test_malformed_override_and_unknown_preset():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("default", ["sample.k"])
    with pytest.raises(ConfigError, match="did you mean 'default'"):
        load_config("defualt")


def test_yaml_file_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: mine\nsample: {k: 2}\n")
    cfg = load_config(str(path), ["select.strategy=best_vs_worst"])
    assert (cfg.name, cfg.sample.k, cfg.select.strategy) == ("mine", 2, "best_vs_worst")
    (tmp_path / "bad.yaml").write_text("sample: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_reusing_sampler_logprobs_requires_plain_sampling():
    assert load_config("default", ["reference.reuse_sampler_logprobs=true"]).reference.reuse_sampler_logprobs
    with pytest.raises(ConfigError, match="temperature=1"):
        load_config("default", ["reference.reuse_sampler_logprobs=true", "sample.temperature=0.7"])


def test_reuse_needs_the_sampler_to_be_the_reference():
    # With SFT the SFT model samples; naming the base policy as the reference would make training's
    # π_ref (the sampler's log-probs) and the evaluation KL's π_ref two different models.
    chain = load_config("rs_dpo_chain")
    assert chain.reference.reuse_sampler_logprobs and chain.reference_is_sampler()
    with pytest.raises(ConfigError, match="the SFT model"):
        load_config("rs_dpo_chain", [f"model.reference={chain.model.policy}"])
    plain = load_config("default", ["reference.reuse_sampler_logprobs=true", "model.reference=smollm2-135m-instruct"])
    assert plain.reference_is_sampler()
    with pytest.raises(ConfigError, match="reference model"):
        load_config("default", ["reference.reuse_sampler_logprobs=true", "model.reference=/some/other/model"])


def test_later_rounds_reuse_the_sampler_logprobs_only_while_the_sampler_is_the_reference():
    initial = load_config("default", ["rounds=3"])  # the preset reuses them; the reference stays the initial policy
    assert [initial.reuses_sampler_logprobs(r) for r in (1, 2, 3)] == [True, False, False]
    previous = load_config("default", ["rounds=3", "rounds_reference=previous"])
    assert [previous.reuses_sampler_logprobs(r) for r in (1, 2, 3)] == [True, True, True]


def test_rounds_are_refused_with_ppo():
    with pytest.raises(ConfigError, match="rounds=2 repeats the offline"):
        load_config("ppo", ["rounds=2"])
    with pytest.raises(ConfigError, match="rounds"):
        load_config("default", ["rounds=0"])


def test_reward_model_requires_a_path():
    with pytest.raises(ConfigError, match="reward_model_path"):
        load_config("default", ["score.reward=reward_model"])


def test_flatten_gives_dotted_params():
    flat = flatten(load_config("default"))
    assert flat["sample.k"] == 8 and flat["train.resources.num_workers"] == 1


def test_a_directory_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "default").mkdir()  # e.g. a run directory
    monkeypatch.chdir(tmp_path)
    assert load_config("default").name == "default"


def test_adam_betas_reach_the_deepspeed_optimizer():
    from rayalign.training.deepspeed_config import deepspeed_config

    cfg = load_config("default", ["reward_model.adam_betas=[0.8, 0.999]"])
    assert deepspeed_config(cfg.reward_model, 1)["optimizer"]["params"]["betas"] == [0.8, 0.999]
    assert deepspeed_config(cfg.train, 1)["optimizer"]["params"]["betas"] == [0.9, 0.95]
    with pytest.raises(ConfigError, match=r"train\.adam_betas\.1"):
        load_config("default", ["train.adam_betas=[0.9, 1.0]"])


def test_tracking_follows_mlflow_environment_variables_after_the_command_line_and_config(monkeypatch, tmp_path):
    from rayalign.tracking import tracking_target

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    cfg = load_config("default")
    assert tracking_target(cfg, tmp_path) == (f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}", "rayalign")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert tracking_target(cfg, tmp_path) == ("http://env:5000", "from-env")
    configured = load_config("default", ["tracking.uri=http://cfg:5000", "tracking.experiment=from-cfg"])
    assert tracking_target(configured, tmp_path) == ("http://cfg:5000", "from-cfg")
    assert tracking_target(configured, tmp_path, "http://cli:5000")[0] == "http://cli:5000"


def test_ppo_prompts_must_split_evenly_over_workers():
    with pytest.raises(ConfigError, match="ppo.prompts_per_step=6 does not split evenly"):
        load_config("ppo", ["ppo.prompts_per_step=6", "ppo.resources.num_workers=4"])
    assert load_config("ppo", ["ppo.prompts_per_step=8", "ppo.resources.num_workers=4"]).ppo.enabled


@pytest.mark.parametrize("preset", preset_names())
def test_the_documented_config_reads_back_as_the_same_config(preset):
    import yaml

    from rayalign.config import RunConfig
    from rayalign.config.documented import documented_yaml

    cfg = load_config(preset, ["data.instruction='Say: {prompt} # now'"])  # quotes, a colon and a hash
    text = documented_yaml(cfg)
    assert RunConfig.model_validate(yaml.safe_load(text)) == cfg
    assert "  k: 8" in text or "  k: 16" in text
    assert "# Responses sampled per prompt." in text and "ppo:  # The PPO baseline" in text


def test_config_command_prints_overrides_with_their_documentation(capsys):
    from rayalign.cli import main

    assert main(["config", "ppo", "ppo.steps=3"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("steps:"))
    assert line.split("#")[0].split() == ["steps:", "3"] and "PPO steps" in line


def test_registering_a_model_needs_it_logged():
    with pytest.raises(ConfigError, match="tracking.register_model needs tracking.log_model=true"):
        load_config("default", ["tracking.register_model=aligned", "tracking.log_model=false"])
    assert load_config("default", ["tracking.register_model=aligned"]).tracking.log_model
