# shellcheck shell=bash
# Where a server's exporters listen, for the stack's monitoring server (tier prometheus,
# templates_src/gitlab_cfn/compile/scrape.py, which holds the same ports).
#
# With a monitoring server (the user data's METRICS_SCRAPED 'true') each exporter listens on
# the server's private IPv4 address, where the monitoring server's security group, and no
# other, may reach it; without one, where the package puts them: localhost. Ports are the
# package's defaults (omnibus-gitlab files/gitlab-config-template/gitlab.rb.template,
# 18.11.11+ee.0 to 19.3.0+ee.0): node_exporter 9100, Workhorse 9229, Puma's exporter 8083
# (off by default; GitLab docs administration/monitoring/prometheus/web_exporter.md: the dedicated
# metrics server, Rails' /-/metrics in a process of its own), Sidekiq 8082, Gitaly 9236, Praefect 9652.

# A failing metrics_host (die) must stop the boot: these functions run inside command
# substitutions, where bash does not apply set -e (bash(1), "Command Substitution": the -e
# option is cleared without inherit_errexit), so each substitution's status is checked with
# `|| return`, and their callers compute them into variables before writing any gitlab.rb.

# metrics_host: the address the exporters listen on.
metrics_host() {
  local address
  if [[ "${METRICS_SCRAPED:-}" != true ]]; then
    printf 'localhost'
    return
  fi
  # The first IPv4 address of the server's interfaces (an IPv6 one may come first).
  address=$(hostname -I | tr ' ' '\n' | grep -m1 -E '^([0-9]{1,3}\.){3}[0-9]{1,3}$' || true)
  [[ -n "$address" ]] || die "this server has no private IPv4 address for its exporters (hostname -I: '$(hostname -I)')"
  printf '%s' "$address"
}

# exporters_gitlab_rb ROLE: the gitlab.rb lines that move ROLE's exporters to the private
# address; nothing without a monitoring server. Gitaly's and Praefect's own exporter is a key of
# their configuration hash: exporter_configuration_key.
exporters_gitlab_rb() {
  [[ "${METRICS_SCRAPED:-}" == true ]] || return 0
  local host
  host=$(metrics_host) || return
  printf "# Exporters on the private address, for the monitoring server (security groups: it alone).\n"
  printf "node_exporter['listen_address'] = %s\n" "$(ruby_string "$host:9100")"
  case $1 in
    gitlab-app)
      printf "gitlab_workhorse['prometheus_listen_addr'] = %s\n" "$(ruby_string "$host:9229")"
      printf "puma['exporter_enabled'] = true\npuma['exporter_address'] = %s\npuma['exporter_port'] = 8083\n" \
        "$(ruby_string "$host")"
      printf "sidekiq['listen_address'] = %s\nsidekiq['listen_port'] = 8082\n" "$(ruby_string "$host")"
      ;;
    gitlab-sidekiq)
      printf "sidekiq['listen_address'] = %s\nsidekiq['listen_port'] = 8082\n" "$(ruby_string "$host")"
      ;;
    gitaly | praefect) ;;
    *) die "exporters_gitlab_rb: no exporters known for role '$1'" ;;
  esac
}

# exporter_configuration_key PORT: the line of gitaly['configuration'] or praefect['configuration']
# moving its exporter (prometheus_listen_addr, 'localhost:PORT' by default) to the private address;
# nothing without a monitoring server.
exporter_configuration_key() {
  [[ "${METRICS_SCRAPED:-}" == true ]] || return 0
  local host
  host=$(metrics_host) || return
  printf '  prometheus_listen_addr: %s,\n' "$(ruby_string "$host:$1")"
}
