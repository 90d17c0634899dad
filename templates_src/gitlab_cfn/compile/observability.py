"""What the stack watches: the log families, the metrics namespace, the retention values.

One place for the names that the templates (``tiers/logs.py``, ``tiers/monitoring.py``)
and the boot library (``scripts/lib/cloudwatch.sh``) must agree on; a test compares
the boot library's list with ``LOG_FAMILIES``.

Log groups are ``/gitlab-cfn/<parent stack name>/<family>``, one per GitLab log
family, each stream named after the instance that writes it. The paths are those
GitLab writes on a package install:

- Rails JSON logs under ``gitlab_rails['log_directory']`` = ``/var/log/gitlab/gitlab-rails``
  (omnibus-gitlab files/gitlab-cookbooks/gitlab/attributes/default.rb@19.3.0+ee.0;
  file names from https://docs.gitlab.com/administration/logs/: production_json.log,
  api_json.log, application_json.log, exceptions_json.log, audit_json.log);
- runit services log to ``<log_directory>/current`` (svlogd): puma, sidekiq,
  gitlab-workhorse, gitaly, praefect (the same attributes file,
  gitaly/attributes/default.rb, praefect/attributes/default.rb);
- nginx: ``gitlab_access.log`` and ``gitlab_error.log`` under ``/var/log/gitlab/nginx``
  (gitlab/templates/default/nginx-gitlab-rails.conf.erb@19.3.0+ee.0, access_log and error_log);
- gitlab-shell: ``/var/log/gitlab/gitlab-shell/gitlab-shell.log`` (gitlab-shell-config.yml.erb,
  "Default is gitlab-shell.log in the root directory", attributes default.rb line
  ``gitlab_shell['log_directory']``);
- the boot: cloud-init's output of the user data, ``/var/log/cloud-init-output.log``
  (cloud-init's default ``output: {all: '| tee -a /var/log/cloud-init-output.log'}``,
  https://cloudinit.readthedocs.io/en/latest/reference/base_config_reference.html#output).
"""

from __future__ import annotations

# family -> the files of that family (the agent's file_path globs).
LOG_FAMILIES: dict[str, tuple[str, ...]] = {
    "rails-production": ("/var/log/gitlab/gitlab-rails/production_json.log",),
    "rails-api": ("/var/log/gitlab/gitlab-rails/api_json.log",),
    "rails-application": ("/var/log/gitlab/gitlab-rails/application_json.log",),
    "rails-exceptions": ("/var/log/gitlab/gitlab-rails/exceptions_json.log",),
    "rails-audit": ("/var/log/gitlab/gitlab-rails/audit_json.log",),
    "sidekiq": ("/var/log/gitlab/sidekiq/current",),
    "workhorse": ("/var/log/gitlab/gitlab-workhorse/current",),
    "puma": ("/var/log/gitlab/puma/current",),
    "nginx-access": ("/var/log/gitlab/nginx/gitlab_access.log",),
    "nginx-error": ("/var/log/gitlab/nginx/gitlab_error.log",),
    "gitlab-shell": ("/var/log/gitlab/gitlab-shell/gitlab-shell.log",),
    "gitaly": ("/var/log/gitlab/gitaly/current",),
    "praefect": ("/var/log/gitlab/praefect/current",),
    "boot": ("/var/log/cloud-init-output.log",),
}
# Which families each server role ships (scripts/lib/cloudwatch.sh keeps the same table).
ROLE_FAMILIES: dict[str, tuple[str, ...]] = {
    "gitlab-app": ("rails-production", "rails-api", "rails-application", "rails-exceptions",
                   "rails-audit", "sidekiq", "workhorse", "puma", "nginx-access", "nginx-error",
                   "gitlab-shell", "boot"),
    "gitaly": ("gitaly", "boot"),
    "praefect": ("praefect", "boot"),
    "sidekiq": ("sidekiq", "rails-application", "rails-exceptions", "boot"),
    # The monitoring server (monitoring.node): its boot; Prometheus's own log stays on the server.
    "monitoring": ("boot",),
}

LOG_GROUP_ROOT = "/gitlab-cfn"
# Every log group of a stack is under this, for Fn::Sub in a tier that has
# ParentStackName (the key policy and the agent's policy name it). The groups
# themselves are under ``<this>/<8 characters of the logs stack's id>/``: they are
# kept when the stack is deleted, and a new stack of the same name must not collide.
LOG_GROUP_PREFIX = LOG_GROUP_ROOT + "/${ParentStackName}"
# The metrics namespace of a stack: the agent's memory and disk metrics and the
# backup's. Per stack, so that the agent's policy (cloudwatch:namespace condition)
# lets a server write only its own stack's metrics.
METRICS_NAMESPACE = "gitlab-cfn/${ParentStackName}"

# The values CloudWatch Logs accepts for a log group's retention, in days
# (PutRetentionPolicy, retentionInDays:
# https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html;
# AWS::Logs::LogGroup RetentionInDays lists the same values).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                  1827, 2192, 2557, 2922, 3288, 3653)
DEFAULT_RETENTION_DAYS = 90

# The Gitaly data volume's mount point (scripts/gitaly.sh DATA_DIR), watched for free space.
GITALY_DATA_PATH = "/var/opt/gitlab/git-data"


def log_group_logical_id(family: str) -> str:
    """``rails-production`` -> ``RailsProductionLogGroup``."""
    return "".join(part.capitalize() for part in family.split("-")) + "LogGroup"
