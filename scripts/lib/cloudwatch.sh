# shellcheck shell=bash
# The CloudWatch agent of a server: GitLab's logs to the stack's log groups, memory
# and disk metrics to the stack's namespace. After lib/common.sh; a role script calls
#   configure_cloudwatch_agent ROLE
# once its services are configured. The agent is installed by the AMI bake
# (bake-install.sh); the configuration is written here and loaded with the agent's
# own control script (fetch-config, -s starts it):
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/install-CloudWatch-Agent-commandline-fleet.html
#
# Needs LOG_GROUP_PREFIX (/gitlab-cfn/<parent stack>/<suffix>, tier logs) and AWS_REGION.
# The servers' user data carries only LOG_GROUP_ID (the suffix, 8 characters: the user data
# is limited to 16 KB) and BUNDLE_PARAMETER (/gitlab-cfn/<parent stack>/<role>/boot-bundle):
# the prefix is put together from the two when this file is sourced.
# The families and their files are those of templates_src/gitlab_cfn/compile/observability.py
# (LOG_FAMILIES, ROLE_FAMILIES); a test keeps the two tables equal.

CLOUDWATCH_AGENT_DIR="${CLOUDWATCH_AGENT_DIR:-/opt/aws/amazon-cloudwatch-agent}"
CLOUDWATCH_AGENT_CTL="$CLOUDWATCH_AGENT_DIR/bin/amazon-cloudwatch-agent-ctl"
CLOUDWATCH_CONFIG="$CLOUDWATCH_AGENT_DIR/etc/gitlab-cfn.json"
GITALY_DATA_PATH=/var/opt/gitlab/git-data
LOG_GROUP_ID_PATTERN='^[0-9a-f]{8}$'

# log_group_prefix_from_id: LOG_GROUP_PREFIX from LOG_GROUP_ID and the parent stack's name in
# BUNDLE_PARAMETER, unless LOG_GROUP_PREFIX is set. Nothing when either is missing or malformed
# (require_env LOG_GROUP_PREFIX then names what is missing).
log_group_prefix_from_id() {
  [[ -z "${LOG_GROUP_PREFIX:-}" && "${LOG_GROUP_ID:-}" =~ $LOG_GROUP_ID_PATTERN ]] || return 0
  [[ "${BUNDLE_PARAMETER:-}" =~ ^(/gitlab-cfn/[A-Za-z][A-Za-z0-9-]*)/[a-z-]+/boot-bundle$ ]] || return 0
  LOG_GROUP_PREFIX="${BASH_REMATCH[1]}/$LOG_GROUP_ID"
  export LOG_GROUP_PREFIX
}
log_group_prefix_from_id

# cloudwatch_log_files FAMILY: the files of one log family.
cloudwatch_log_files() {
  case $1 in
    rails-production) echo /var/log/gitlab/gitlab-rails/production_json.log ;;
    rails-api) echo /var/log/gitlab/gitlab-rails/api_json.log ;;
    rails-application) echo /var/log/gitlab/gitlab-rails/application_json.log ;;
    rails-exceptions) echo /var/log/gitlab/gitlab-rails/exceptions_json.log ;;
    rails-audit) echo /var/log/gitlab/gitlab-rails/audit_json.log ;;
    sidekiq) echo /var/log/gitlab/sidekiq/current ;;
    workhorse) echo /var/log/gitlab/gitlab-workhorse/current ;;
    puma) echo /var/log/gitlab/puma/current ;;
    nginx-access) echo /var/log/gitlab/nginx/gitlab_access.log ;;
    nginx-error) echo /var/log/gitlab/nginx/gitlab_error.log ;;
    gitlab-shell) echo /var/log/gitlab/gitlab-shell/gitlab-shell.log ;;
    gitaly) echo /var/log/gitlab/gitaly/current ;;
    praefect) echo /var/log/gitlab/praefect/current ;;
    boot) echo /var/log/cloud-init-output.log ;;
    *) return 1 ;;
  esac
}

# cloudwatch_role_families ROLE: the log families a role ships.
cloudwatch_role_families() {
  case $1 in
    gitlab-app) echo rails-production rails-api rails-application rails-exceptions rails-audit sidekiq workhorse puma nginx-access nginx-error gitlab-shell boot ;;
    gitaly) echo gitaly boot ;;
    praefect) echo praefect boot ;;
    sidekiq) echo sidekiq rails-application rails-exceptions boot ;;
    monitoring) echo boot ;;
    *) return 1 ;;
  esac
}

# cloudwatch_config ROLE: the agent's JSON configuration for ROLE, on stdout.
cloudwatch_config() {
  local role=$1 families family files=() stack
  families=$(cloudwatch_role_families "$role") || die "no CloudWatch log families for role '$role'"
  for family in $families; do
    files+=("$family=$(cloudwatch_log_files "$family")")
  done
  # /gitlab-cfn/<stack>/<suffix> -> <stack>
  stack=${LOG_GROUP_PREFIX#/gitlab-cfn/}
  stack=${stack%/*}
  ROLE_NAME="$role" STACK="$stack" PREFIX="$LOG_GROUP_PREFIX" REGION="$AWS_REGION" \
    DATA_PATH="$GITALY_DATA_PATH" python3 - "${files[@]}" <<'PY'
import json, os, sys

role, stack, prefix = os.environ["ROLE_NAME"], os.environ["STACK"], os.environ["PREFIX"]
# Dimensions of every metric of this server: the stack and the role, which the
# alarms and the dashboard name (the agent adds path, device and fstype to disk).
dims = {"Stack": stack, "Role": role}
disk_paths = ["/"] + ([os.environ["DATA_PATH"]] if role == "gitaly" else [])
config = {
    "agent": {"metrics_collection_interval": 60, "region": os.environ["REGION"],
              "logfile": "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log"},
    "logs": {
        "logs_collected": {"files": {"collect_list": [
            {"file_path": path, "log_group_name": f"{prefix}/{family}",
             "log_stream_name": "{instance_id}", "timezone": "UTC"}
            for family, path in (arg.split("=", 1) for arg in sys.argv[1:])
        ]}},
    },
    "metrics": {
        "namespace": f"gitlab-cfn/{stack}",
        "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
        # Each set is published for a metric only when the metric has all of its dimensions
        # and more (aws/amazon-cloudwatch-agent plugins/outputs/cloudwatch/cloudwatch.go,
        # ProcessRollup; schema: translator/config/schema.json, metricsDefinition): with
        # append_dimensions there is no host dimension, and disk has path and fstype (device
        # dropped, mode always: metrics_collect/disk/ruleDropTags.go), so each set is used.
        # Also published without InstanceId, so that an alarm can name the metric
        # of a role without knowing its servers; and per server without device and
        # fstype (the Gitaly disk alarm of each Gitaly server).
        "aggregation_dimensions": [["Stack", "Role"], ["Stack", "Role", "path"],
                                   ["InstanceId", "Stack", "Role", "path"]],
        "metrics_collected": {
            "mem": {"measurement": ["mem_used_percent"], "append_dimensions": dims},
            "disk": {"measurement": ["used_percent", "inodes_free"], "resources": disk_paths,
                     "drop_device": True, "ignore_file_system_types": ["sysfs", "devtmpfs", "tmpfs"],
                     "append_dimensions": dims},
        },
    },
}
print(json.dumps(config, indent=2, sort_keys=True))
PY
}

# configure_cloudwatch_agent ROLE: writes the configuration and (re)starts the agent.
configure_cloudwatch_agent() {
  local role=$1 stack
  require_env LOG_GROUP_PREFIX AWS_REGION
  stack=${LOG_GROUP_PREFIX#/gitlab-cfn/}
  [[ -x "$ROOT$CLOUDWATCH_AGENT_CTL" ]] ||
    die "the CloudWatch agent is not installed ($CLOUDWATCH_AGENT_CTL): bake the image with gitlab-cfn bake-ami"
  cloudwatch_config "$role" | install_file 0644 "$ROOT$CLOUDWATCH_CONFIG"
  "$ROOT$CLOUDWATCH_AGENT_CTL" -a fetch-config -m ec2 -s -c "file:$ROOT$CLOUDWATCH_CONFIG" >/dev/null ||
    die "the CloudWatch agent refused its configuration $CLOUDWATCH_CONFIG"
  log "CloudWatch agent: logs to $LOG_GROUP_PREFIX/*, metrics to gitlab-cfn/${stack%/*}"
}
