# shellcheck shell=bash
# The monitoring server (config monitoring.node): GitLab's Prometheus, scraping the stack.
#
# Writes /etc/gitlab/gitlab.rb for a server of GitLab's monitoring role only (roles
# ['monitoring_role']: Prometheus, node_exporter and Alertmanager; Alertmanager off here,
# since the stack's alarms are CloudWatch's), with one scrape job per exporter of each
# server role, found by EC2 service discovery (Prometheus's ec2_sd_configs): the running
# instances of the stack's VPC whose aws:cloudformation:logical-id tag names that role's
# group or instances, scraped on their private address at the exporter's port. Then
# reconfigures (which starts Prometheus) and signals success once Prometheus is ready.
#
# Preamble: AWS_REGION CFN_STACK CFN_RESOURCE VPC_ID SCRAPE_JOBS (compile/scrape.py:
# 'role:exporter:port:LogicalId[+LogicalId...];...') LOG_GROUP_PREFIX (lib/cloudwatch.sh).
# Then the CloudWatch agent ships the boot log (lib/cloudwatch.sh, role monitoring).
#
# Sources: GitLab docs administration/reference_architectures/3k_users.md "Configure
# Prometheus" (roles ['monitoring_role'], prometheus['scrape_configs']); omnibus-gitlab
# 18.11.11+ee.0 to 19.3.0+ee.0: package/libraries/config/roles/monitoring.rb and
# config/services.rb (monitoring_role enables prometheus, alertmanager, node_exporter),
# monitoring/libraries/prometheus.rb (the scrape_configs given are appended to the package's
# own jobs; monitor_kubernetes false leaves out the Kubernetes jobs, which need a cluster),
# monitoring/recipes/prometheus.rb (/var/opt/gitlab/prometheus/prometheus.yml);
# Prometheus's configuration, ec2_sd_config
# (https://prometheus.io/docs/prometheus/latest/configuration/configuration/#ec2_sd_config).

ROLE=monitoring
# Prometheus stays on localhost (prometheus['listen_address']'s default): it is reached
# through Session Manager port forwarding, never from the network.
PROMETHEUS_ADDRESS=localhost:9090
READY_TIMEOUT="${GITLAB_CFN_READINESS_TIMEOUT:-300}"
JOB='^([a-z][a-z-]*):([a-z]+):([0-9]{2,5}):([A-Za-z0-9]+(\+[A-Za-z0-9]+)*)$'

# scrape_job ROLE EXPORTER PORT LOGICAL-IDS: one entry of prometheus['scrape_configs'].
scrape_job() {
  local role=$1 exporter=$2 port=$3 ids=$4 id values=""
  for id in ${ids//+/ }; do
    values+="${values:+, }$(ruby_string "$id")"
  done
  cat <<RUBY
  {
    'job_name' => $(ruby_string "$role-$exporter"),
    'ec2_sd_configs' => [{
      'region' => $(ruby_string "$AWS_REGION"),
      'port' => $port,
      'refresh_interval' => '60s',
      'filters' => [
        { 'name' => 'vpc-id', 'values' => [$(ruby_string "$VPC_ID")] },
        { 'name' => 'instance-state-name', 'values' => ['running'] },
        { 'name' => 'tag:aws:cloudformation:logical-id', 'values' => [$values] },
      ],
    }],
    'relabel_configs' => [
      { 'source_labels' => ['__meta_ec2_instance_id'], 'target_label' => 'instance' },
      { 'source_labels' => ['__meta_ec2_tag_Name'], 'target_label' => 'name' },
      { 'source_labels' => ['__meta_ec2_availability_zone'], 'target_label' => 'availability_zone' },
      { 'target_label' => 'role', 'replacement' => $(ruby_string "$role") },
    ],
  },
RUBY
}

render_gitlab_rb() {
  local entry
  local -a entries
  cat <<RUBY
# Written at boot by gitlab-cfn; edits are overwritten on the next boot.
# The monitoring server: Prometheus (and its own node_exporter) only.
roles ['monitoring_role']
alertmanager['enable'] = false
prometheus['listen_address'] = $(ruby_string "$PROMETHEUS_ADDRESS")
prometheus['monitor_kubernetes'] = false
prometheus['scrape_configs'] = [
RUBY
  IFS=';' read -r -a entries <<<"$SCRAPE_JOBS"
  for entry in "${entries[@]}"; do
    [[ "$entry" =~ $JOB ]] || die "SCRAPE_JOBS: '$entry' is not role:exporter:port:LogicalId[+LogicalId...]"
    scrape_job "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[4]}"
  done
  printf ']\n'
}

# start_prometheus --region REGION: reconfigure starts Prometheus, whose EC2 service discovery
# calls DescribeInstances in REGION with the instance role (verify/access.py maps this); ready
# once Prometheus answers /-/ready.
start_prometheus() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  [[ "$1" == --region && "$2" == "$AWS_REGION" ]] || die "start_prometheus: --region $AWS_REGION expected"
  gitlab-ctl reconfigure
  until curl -fsS -o /dev/null "http://$PROMETHEUS_ADDRESS/-/ready" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      die "Prometheus is not ready on $PROMETHEUS_ADDRESS after ${READY_TIMEOUT}s (see /var/log/gitlab/prometheus/current)"
    fi
    sleep 1
  done
}

main() {
  start_boot
  require_env AWS_REGION CFN_STACK VPC_ID SCRAPE_JOBS LOG_GROUP_PREFIX
  [[ "$VPC_ID" =~ ^vpc-[0-9a-f]+$ ]] || die "VPC_ID: '$VPC_ID' is not a VPC id"
  render_gitlab_rb | install_file 0600 "$ROOT/etc/gitlab/gitlab.rb"
  start_prometheus --region "$AWS_REGION"
  configure_cloudwatch_agent monitoring
  log "Prometheus is ready on $PROMETHEUS_ADDRESS"
}

# Sourced (tests render gitlab.rb this way), nothing runs; executed, the boot does.
(return 0 2>/dev/null) || main "$@"
