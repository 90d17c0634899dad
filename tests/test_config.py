import pytest
from gitlab_cfn.compile import config
from gitlab_cfn.errors import ConfigError

BAD = [
    ({"az_count": 5}, "az_count: must be one of 2, 3 (got 5)"),
    ({"az_count": "two"}, "az_count: must be one of 2, 3 (got 'two')"),
    ({"nat_gateways": "none"}, "nat_gateways: must be one of per-az, single (got 'none')"),
    ({"bastions": "yes"}, "bastions: must be true or false (got 'yes')"),
    ({"ssh_key_pair": 1}, "ssh_key_pair: must be true or false (got 1)"),
    ({"databse": {}}, "databse: unknown key (allowed: size, az_count, nat_gateways, bastions, ssh_key_pair, "
                      "database, cache, gitaly, app, sidekiq, praefect, monitoring)"),
    ({"database": {"size": 1}}, "database.size: unknown key (allowed: instance_class, storage_type)"),
    ({"database": "big"}, "database: must be a mapping of keys to values (got 'big')"),
    ({"database": {"storage_type": "st1"}}, "database.storage_type: must be one of io1, gp3 (got 'st1')"),
    ({"cache": {"replicas": 0}}, "cache.replicas: must be a whole number from 1 to 5 (got 0)"),
    ({"cache": {"replicas": True}}, "cache.replicas: must be a whole number from 1 to 5 (got True)"),
    ({"cache": {"node_type": "cache.t2.micro"}}, "cache.node_type: must be one of cache.t3.medium"),
    ({"gitaly": {"volume_type": "standard"}}, "gitaly.volume_type: must be one of io1, gp3 (got 'standard')"),
    ({"gitaly": {"instance_type": "t3.large"}}, "gitaly.instance_type: burstable types are not allowed"),
    ({"gitaly": {"instance_type": "c4.xlarge"}}, "gitaly.instance_type: must be one of c5.xlarge"),
    ({"app": {"instance_type": "m4.xlarge"}}, "app.instance_type: must be one of c5.xlarge"),
    ({"app": {"min_size": 3, "max_size": 2}}, "app: min_size <= max_size must hold (got 3 and 2)"),
    # No desired capacity: a stack update must never reset a scaled-out group.
    ({"app": {"desired_capacity": 2}}, "app.desired_capacity: no longer a setting: the group starts at app.min_size"),
    ({"app": {"scale_in_cpu": 70}}, "app.scale_in_cpu: must be lower than app.scale_out_cpu (got 70 and 60)"),
    ({"app": {"max_size": 101}}, "app.max_size: must be a whole number from 1 to 100 (got 101)"),
    ({"app": {"gitlab_ami": "ami-123"}}, "app.gitlab_ami: must be one of ssm-parameter, image-id (got 'ami-123')"),
    ([1, 2], "config: must be a mapping of keys to values (got [1, 2])"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_config_is_one_clear_line(data, message):
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    text = str(err.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_defaults_are_the_guides_poc():
    cfg = config.from_dict(None)
    assert cfg == config.BuildConfig()
    assert (cfg.az_count, cfg.nat_gateways, cfg.bastions) == (2, "per-az", True)
    assert (cfg.app.min_size, cfg.app.max_size) == (2, 4)
    assert (cfg.app.scale_out_cpu, cfg.app.scale_in_cpu) == (60, 45)
    assert cfg.cache.node_type == "cache.t3.medium"
    assert (cfg.app.instance_type, cfg.gitaly.instance_type) == ("c5.xlarge", "c5.xlarge")
    assert (cfg.database.storage_type, cfg.gitaly.volume_type) == ("io1", "io1")


def test_partial_nested_config_keeps_other_defaults():
    cfg = config.from_dict({"app": {"max_size": 8}})
    assert cfg.app.max_size == 8 and cfg.app.min_size == 2


def test_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("az_count: 3\ncache:\n  replicas: 2\n")
    cfg = config.load(path)
    assert cfg.az_count == 3 and cfg.cache.replicas == 2
    path.write_text("")
    assert config.load(path) == config.BuildConfig()


def test_unreadable_or_broken_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"^--config: cannot read .*missing.yaml"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("az_count: [3\n")
    with pytest.raises(ConfigError, match=r"^--config: .*bad.yaml is not valid YAML at line \d+$"):
        config.load(bad)


def test_every_key_is_documented():
    keys = [row[0] for row in config.describe()]
    assert "database.storage_type" in keys and "app.scale_in_cpu" in keys and "az_count" in keys
    assert all(row[2] for row in config.describe())
