# shellcheck shell=bash
# Shared by the servers that run one service of the GitLab package (gitaly.sh, praefect.sh).

# gitlab_rb_other_services_off: the gitlab.rb lines of a server that runs one service of
# the GitLab package (Gitaly, Praefect): every other service off, no migrations here.
gitlab_rb_other_services_off() {
  cat <<'RUBY'
postgresql['enable'] = false
redis['enable'] = false
nginx['enable'] = false
puma['enable'] = false
sidekiq['enable'] = false
gitlab_workhorse['enable'] = false
prometheus['enable'] = false
alertmanager['enable'] = false
gitlab_exporter['enable'] = false
gitlab_kas['enable'] = false
letsencrypt['enable'] = false
gitlab_rails['auto_migrate'] = false
RUBY
}
