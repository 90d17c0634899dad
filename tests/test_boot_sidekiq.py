"""Sidekiq servers, and application servers without Sidekiq, with a second repository storage
and a cache Redis (tests/support/boot.py: the real program in its own namespaces).

A Sidekiq server runs ``userdata.body("gitlab-sidekiq")`` (the application
server's script, BOOT_ROLE gitlab-sidekiq). The fake gitlab-ctl starts only the
services gitlab.rb leaves on (support/fakebin/services.py) and records which.
"""

from __future__ import annotations

import json

import pytest
from gitlab_cfn.compile import versions

from support import boot
from support.boot_fixtures import boot_tools, cloud, postgres  # noqa: F401  (fixtures)
from support.gitlab_rb import unknown_settings

SSHD_DROP_IN = "/etc/ssh/sshd_config.d/60-gitlab-cfn.conf"
CLUSTER = "tcp://internal-praefect-0123456789.elb.ap-southeast-2.amazonaws.com:2305"


def sidekiq_env(cloud) -> dict[str, str]:
    """What the Sidekiq template's user data exports: the app's, without the host keys and
    root password, and BOOT_ROLE gitlab-sidekiq."""
    env = {k: v for k, v in cloud.env.items() if k not in ("HOST_KEYS_SECRET_ARN", "ROOT_PASSWORD_SECRET_ARN")}
    return {**env, "BOOT_ROLE": "gitlab-sidekiq", "RUN_SIDEKIQ": "true", "CFN_RESOURCE": "SidekiqAutoScalingGroup",
            "GITLAB_CFN_READINESS_INTERVAL": "1"}


def actions(server: boot.Server) -> list[str]:
    return [f"{e['command']} {e.get('action') or e.get('verb') or e.get('exit_code')}" for e in server.events()]


def large(cloud) -> dict[str, str]:
    """A 10k build that kept the POC's Gitaly server: the cluster is storage 'cluster' (the
    app's GITALY_SECRET_ARN then holds Praefect's external token), the POC server 'default',
    with its own token secret, and a cache Redis with its own AUTH token secret."""
    client = boot.secrets_client(cloud.standin.endpoint)
    poc = client.create_secret(Name="gitlab-test/poc-gitaly", SecretString=json.dumps({"token": "pocGitalyT0ken"}))
    cache = client.create_secret(Name="gitlab-test/redis-cache", SecretString=json.dumps({"token": boot.REDIS_CACHE_TOKEN}))
    return {"GITALY_ADDRESS": CLUSTER, "GITALY_STORAGE": "cluster", "GITALY2_ADDRESS": "tcp://10.0.1.123:8075",
            "GITALY2_SECRET_ARN": poc["ARN"], "GITALY2_STORAGE": "default", **cloud.cache_redis_env(cache["ARN"])}


def test_a_sidekiq_server_runs_sidekiq_only_on_the_application_servers_secrets(cloud):
    # From 2k the application servers run no Sidekiq; here a 10k build's storages and caches.
    extra = large(cloud)
    app = cloud.server("app-1")
    first = app.boot({**cloud.env, **extra, "RUN_SIDEKIQ": "false", "GITLAB_CFN_READINESS_INTERVAL": "1"})
    assert first.returncode == 0, first.stderr
    app_settings = boot.evaluate_gitlab_rb(app.read("/etc/gitlab/gitlab.rb"))["settings"]
    assert app_settings["sidekiq"] == {"enable": False}
    (restart,) = app.events("gitlab-ctl")[1:]
    assert restart["action"] == "restart" and restart["started"] == []
    # The tokens read from Secrets Manager by the real AWS CLI, each with its own storage or Redis.
    rails = app_settings["gitlab_rails"]
    assert rails["repositories_storages"] == {
        "cluster": {"gitaly_address": CLUSTER, "gitaly_token": "gitalyT0ken"},
        "default": {"gitaly_address": "tcp://10.0.1.123:8075", "gitaly_token": "pocGitalyT0ken"}}
    assert (rails["redis_cache_instance"], rails["redis_cache_password"]) == (
        f"rediss://{boot.HOST}:{cloud.redis['cache'].port}", "redisCacheT0ken")
    everything = first.stdout + first.stderr + app.read("/var/log/gitlab-cfn-fakes.log")
    assert [s for s in ("pocGitalyT0ken", "redisCacheT0ken") if s in everything] == []

    server = boot.Server(cloud.base, "sidekiq-1", role="gitlab-sidekiq")
    result = server.boot({**sidekiq_env(cloud), **extra})
    assert result.returncode == 0, result.stderr
    assert "Sidekiq answers /readiness" in result.stderr and "for /readiness on port 8092" in result.stderr
    # Configure, start Sidekiq, the CloudWatch agent, signal: no migrations, no one-time
    # settings, no sshd, and no scheduled backup (the application servers run it, lib/backup.sh).
    assert actions(server) == ["gitlab-ctl reconfigure", "gitlab-ctl restart",
                               "amazon-cloudwatch-agent-ctl fetch-config", "cfn-signal 0"]
    assert not server.exists("/etc/cron.d/gitlab-cfn-backup") and app.exists("/etc/cron.d/gitlab-cfn-backup")
    agent = json.loads(server.read("/opt/aws/amazon-cloudwatch-agent/etc/gitlab-cfn.json"))
    shipped = {e["file_path"]: e["log_group_name"] for e in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    assert shipped["/var/log/gitlab/sidekiq/current"] == "/gitlab-cfn/gitlab-test/0a1b2c3d/sidekiq"
    assert "/var/log/gitlab/puma/current" not in shipped
    assert agent["metrics"]["metrics_collected"]["mem"]["append_dimensions"]["Role"] == "sidekiq"
    (restart,) = server.events("gitlab-ctl")[1:]
    assert (restart["service"], restart["started"]) == ("sidekiq", ["sidekiq"])
    assert not server.exists(SSHD_DROP_IN) and not server.exists("/etc/ssh_static")
    # The application servers' gitlab-secrets.json, never one of its own, and nothing published.
    assert json.loads(server.read("/etc/gitlab/gitlab-secrets.json")) == json.loads(
        cloud.secret("RAILS_SECRETS_ARN")["gitlab-secrets.json"])
    assert cloud.secret_versions("RAILS_SECRETS_ARN") == 2 and cloud.secret_versions("HOST_KEYS_SECRET_ARN") == 2

    rb = server.read("/etc/gitlab/gitlab.rb")
    assert unknown_settings(rb, "19.3.0") == []
    settings = boot.evaluate_gitlab_rb(rb)["settings"]
    assert settings["sidekiq"] == {"enable": True, "health_checks_enabled": True, "health_checks_listen_port": 8092}
    for off in ("puma", "gitlab_workhorse", "nginx", "gitlab_kas", "letsencrypt", "gitaly", "postgresql", "redis"):
        assert settings[off] == {"enable": False}, off
    rails = settings["gitlab_rails"]
    assert "monitoring_whitelist" not in rails and "nginx" not in rails and rails["auto_migrate"] is False
    assert (rails["db_host"], rails["db_sslmode"], rails["redis_ssl"]) == (boot.HOST, "require", True)
    assert rails["repositories_storages"] == app_settings["gitlab_rails"]["repositories_storages"]
    assert rails["redis_cache_password"] == "redisCacheT0ken"


def test_a_sidekiq_server_waits_for_published_secrets_and_never_makes_its_own(cloud):
    server = boot.Server(cloud.base, "sidekiq-1", role="gitlab-sidekiq")
    result = server.boot({**sidekiq_env(cloud), "GITLAB_CFN_SECRETS_WAIT": "2", "GITLAB_CFN_SECRETS_INTERVAL": "1"})
    assert result.returncode == 1
    assert [s["exit_code"] for s in server.signals()] == [1]
    assert "error: no application server published gitlab-secrets.json within 2s" in result.stderr
    assert result.stderr.count("no application server has published gitlab-secrets.json yet") == 3
    assert server.events("gitlab-ctl") == []
    assert not server.exists("/etc/gitlab/gitlab-secrets.json")
    assert cloud.secret_versions("RAILS_SECRETS_ARN") == 1


# -- gitlab.rb for every supported version -------------------------------------------------------

SECRETS = {"DB_USER": "gitlab", "DB_PASSWORD": "s3cr3tDbPassw0rd", "REDIS_TOKEN": "redisAuthT0ken",
           "GITALY_TOKEN": "praefectExternalT0ken", "SHELL_SECRET": "shellT0ken", "GITALY2_TOKEN": "gitalyT0ken",
           "REDIS_CACHE_TOKEN": "redisCacheT0ken"}


def values(**extra: str) -> dict[str, str]:
    arns = {variable: f"arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:{name}-AbCdEf"
            for variable, (name, _) in boot.SECRETS.items()}
    return {**boot.preamble_values(5432, "gitlabhq_production", arns), **extra}


# 10k and up with the POC's Gitaly server kept: the cluster is 'cluster', the POC server 'default'.
LARGE = {"RUN_SIDEKIQ": "false", "GITALY_ADDRESS": CLUSTER, "GITALY_STORAGE": "cluster",
         "GITALY2_ADDRESS": "tcp://10.0.1.123:8075", "GITALY2_SECRET_ARN": "arn:aws:secretsmanager:x:1:secret:g2",
         "GITALY2_STORAGE": "default", "REDIS_CACHE_HOST": "master.cache1abc.abcdef.apse2.cache.amazonaws.com",
         "REDIS_CACHE_PORT": "6380", "REDIS_CACHE_SECRET_ARN": "arn:aws:secretsmanager:x:1:secret:rc"}


@pytest.mark.parametrize("role", ["gitlab-app", "gitlab-sidekiq"])
@pytest.mark.parametrize("minor", versions.SUPPORTED_MINORS, ids=lambda m: f"{m[0]}.{m[1]}")
def test_two_storages_and_a_cache_redis_are_documented_on_every_supported_version(minor, role):
    release = versions.SETTINGS_RELEASE[minor]
    extra = {**LARGE, "BOOT_ROLE": role, "RUN_SIDEKIQ": "false" if role == "gitlab-app" else "true"}
    done = boot.render_gitlab_rb(f"{release}-ee", values(**extra), SECRETS)
    assert done.returncode == 0, done.stderr
    assert unknown_settings(done.stdout, release) == []
    settings = boot.evaluate_gitlab_rb(done.stdout)["settings"]
    rails = settings["gitlab_rails"]
    assert rails["repositories_storages"] == {
        "cluster": {"gitaly_address": CLUSTER, "gitaly_token": "praefectExternalT0ken"},
        "default": {"gitaly_address": "tcp://10.0.1.123:8075", "gitaly_token": "gitalyT0ken"}}
    assert rails["redis_cache_instance"] == "rediss://master.cache1abc.abcdef.apse2.cache.amazonaws.com:6380"
    assert rails["redis_cache_password"] == "redisCacheT0ken"
    assert (rails["redis_host"], rails["redis_password"]) == (boot.preamble_values(1, "d", {})["REDIS_HOST"],
                                                              "redisAuthT0ken")
    assert settings["sidekiq"]["enable"] is (role == "gitlab-sidekiq")
    assert ("nginx" in rails or "listen_port" in settings.get("nginx", {})) is (role == "gitlab-app")


def test_without_the_optional_settings_gitlab_rb_names_one_storage_and_no_cache():
    done = boot.render_gitlab_rb("19.3.0-ee", values(), SECRETS)
    assert done.returncode == 0, done.stderr
    rails = boot.evaluate_gitlab_rb(done.stdout)["settings"]["gitlab_rails"]
    assert rails["repositories_storages"] == {"default": {"gitaly_address": "tcp://10.0.1.123:8075",
                                                          "gitaly_token": "praefectExternalT0ken"}}
    assert not [k for k in rails if k.startswith("redis_cache")]


@pytest.mark.parametrize("extra, message", [
    ({"GITALY2_ADDRESS": "tcp://10.0.1.123:8075"},
     "GITALY2_SECRET_ARN is not set but GITALY2_ADDRESS is: GITALY2_ADDRESS GITALY2_SECRET_ARN GITALY2_STORAGE come together"),
    ({"REDIS_CACHE_HOST": "cache.example.com", "REDIS_CACHE_SECRET_ARN": "arn:x"},
     "REDIS_CACHE_PORT is not set but REDIS_CACHE_HOST is: REDIS_CACHE_HOST REDIS_CACHE_PORT REDIS_CACHE_SECRET_ARN come together"),
    ({"GITALY_STORAGE": "cluster"},
     "GITALY_STORAGE: one repository storage must be named 'default' (GITALY_STORAGE or GITALY2_STORAGE)"),
    ({**LARGE, "GITALY2_STORAGE": "cluster"},
     "GITALY2_STORAGE: 'cluster' is GITALY_STORAGE's name too; each storage needs its own"),
    ({"RUN_SIDEKIQ": "no"}, "RUN_SIDEKIQ: 'no' is not 'true' or 'false'"),
    ({"BOOT_ROLE": "gitlab-sidekiq", "RUN_SIDEKIQ": "false"},
     "RUN_SIDEKIQ: a gitlab-sidekiq server runs Sidekiq ('true'), not 'false'"),
    ({"BOOT_ROLE": "praefect"}, "BOOT_ROLE: 'praefect' is not a role of this script (gitlab-app, gitlab-sidekiq)"),
])
def test_inconsistent_settings_are_refused_with_one_line_naming_them(extra, message):
    done = boot.render_gitlab_rb("19.3.0-ee", values(**extra), SECRETS)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.endswith("error: " + message)
