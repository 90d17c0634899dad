"""``make mutants``: realistic one-line bugs, each of which the suite must catch.

A test suite is only as good as the bugs it fails on. Each entry below is a
one-line change a reviewer would worry about — a port, the lock order, the TLS
mode, an IAM or KMS grant, an egress rule, something the image bake leaves
behind — with the tests that are meant to catch it. ``make mutants`` applies
each change to a scratch copy of the repository (the working tree is never
touched), runs those tests there, and reports, for each mutant, whether it was
*killed* (a test failed) and by which test. A mutant that survives is a hole in
the suite: the command exits 1.

The table itself cannot rot: ``tests/test_mutants.py`` (part of ``make test``)
checks that every ``old`` text occurs exactly once in its file, so a refactor
that moves the line makes the suite fail until the entry follows it.

Run ``make mutants`` (a few minutes: the boot tests run once per mutant) or
``.venv/bin/python tests/mutants.py --only port`` for one kind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENVS = (".venv", ".venv-standin", ".venv-checkov", ".venv-awscli")


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str        # port, lock order, TLS mode, IAM/KMS grant, egress, bake leftovers, ...
    path: str        # file, relative to the repository
    old: str         # text that occurs exactly once in the file
    new: str
    tests: tuple[str, ...]   # pytest node ids or files that must fail
    why: str         # what would happen on a real account


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "listen-port", "port", "scripts/gitlab-app.sh",
        "LISTEN_PORT=80\n", "LISTEN_PORT=8080\n",
        ("tests/test_boot_nginx.py", "tests/test_boot_app.py::test_first_server_configures_gitlab_and_signals_success_once_gitlab_serves"),
        "the load balancer sends traffic and health checks to port 80: every target unhealthy"),
    Mutant(
        "try-lock", "lock order", "scripts/gitlab-app.sh",
        "SELECT pg_advisory_lock($LOCK_KEY);", "SELECT pg_try_advisory_lock($LOCK_KEY);",
        ("tests/test_boot_app.py::test_two_servers_booting_at_once_take_turns_and_share_the_first_ones_secrets",),
        "two first servers migrate and seed at once and write different secrets"),
    Mutant(
        "unlock-first", "lock order", "scripts/gitlab-app.sh",
        "\\\\! GITLAB_CFN_PHASE=locked bash $self </dev/null; echo \\$? > $(printf '%q' \"$rc_file\")\n"
        "SELECT pg_advisory_unlock($LOCK_KEY);\n",
        "SELECT pg_advisory_unlock($LOCK_KEY);\n"
        "\\\\! GITLAB_CFN_PHASE=locked bash $self </dev/null; echo \\$? > $(printf '%q' \"$rc_file\")\n",
        ("tests/test_boot_app.py::test_two_servers_booting_at_once_take_turns_and_share_the_first_ones_secrets",),
        "the locked phase runs after the lock is released: the lock serialises nothing"),
    Mutant(
        "lock-psql-no-tls", "TLS mode", "scripts/gitlab-app.sh",
        "user=$DB_USER sslmode=require connect_timeout=10",
        "user=$DB_USER sslmode=disable connect_timeout=10",
        ("tests/test_boot_app.py::test_first_server_configures_gitlab_and_signals_success_once_gitlab_serves",),
        "RDS with rds.force_ssl=1 refuses the connection: no server ever boots"),
    Mutant(
        "rails-db-no-tls", "TLS mode", "scripts/gitlab-app.sh",
        "gitlab_rails['db_sslmode'] = 'require'", "gitlab_rails['db_sslmode'] = 'disable'",
        ("tests/test_boot_app.py::test_first_server_configures_gitlab_and_signals_success_once_gitlab_serves",),
        "Rails cannot connect to RDS, which requires TLS"),
    Mutant(
        "redis-no-tls", "TLS mode", "scripts/gitlab-app.sh",
        "gitlab_rails['redis_ssl'] = true", "gitlab_rails['redis_ssl'] = false",
        ("tests/test_boot_app.py::test_first_server_configures_gitlab_and_signals_success_once_gitlab_serves",
         "tests/test_boot_versions.py", "tests/test_boot_redis.py",
         "tests/test_standin_boots.py::test_the_stack_completes_from_its_servers_signals"),
        "ElastiCache with transit encryption refuses plain connections"),
    Mutant(
        "redis-cache-wrong-token", "secret", "scripts/gitlab-app.sh",
        """gitlab_rails['redis_cache_password'] = $(ruby_string "$REDIS_CACHE_TOKEN")""",
        """gitlab_rails['redis_cache_password'] = $(ruby_string "$REDIS_TOKEN")""",
        ("tests/test_boot_sidekiq.py::test_a_sidekiq_server_runs_sidekiq_only_on_the_application_servers_secrets",),
        "the cache replication group has its own AUTH token: every cache read fails WRONGPASS, readiness never passes"),
    Mutant(
        "redis-cache-no-tls", "TLS mode", "scripts/gitlab-app.sh",
        """$(ruby_string "rediss://$REDIS_CACHE_HOST""", """$(ruby_string "redis://$REDIS_CACHE_HOST""",
        ("tests/test_boot_sidekiq.py::test_a_sidekiq_server_runs_sidekiq_only_on_the_application_servers_secrets",),
        "the cache replication group encrypts in transit too and refuses a plain redis:// connection"),
    Mutant(
        "bake-keeps-host-keys", "bake leftovers", "scripts/bake-install.sh",
        '  rm -f "$ROOT"/etc/ssh/ssh_host_*\n', "",
        ("tests/test_bake_install.py",),
        "every server from the image shares the builder's SSH host keys"),
    Mutant(
        "bake-keeps-machine-id", "bake leftovers", "scripts/bake-install.sh",
        "cloud-init clean --logs --machine-id", "cloud-init clean --logs",
        ("tests/test_bake_install.py",),
        "every server from the image shares one machine-id (journald, DHCP client id)"),
    Mutant(
        "token-punctuation", "stand-in model", "templates_src/gitlab_cfn/compile/tier.py",
        "ExcludePunctuation=True,", "ExcludePunctuation=False,",
        ("tests/test_standin.py::test_the_cache_tiers_generated_token_is_one_elasticache_accepts",),
        "ElastiCache refuses an AUTH token with '/', '@' or '\"': the cache tier never creates"),
    Mutant(
        "launch-role-no-tags", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/launch_role.py",
        '    "ec2:CopyVolumes": "volumes are never copied",\n',
        '    "ec2:CopyVolumes": "volumes are never copied",\n    "ec2:CreateTags": "not needed",\n',
        ("tests/test_service_catalog.py::test_the_launch_role_grants_what_each_resource_type_needs",),
        "a Service Catalog launch fails on the first tagged resource"),
    Mutant(
        "kms-no-data-key", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/policies.py",
        'Sid="UseStackKeyThroughServices",\n            Effect=Allow,\n            Action=[kms.Decrypt, kms.GenerateDataKey],',
        'Sid="UseStackKeyThroughServices",\n            Effect=Allow,\n            Action=[kms.Decrypt],',
        ("tests/test_access.py::test_every_build_passes_the_access_check",),
        "a server cannot write an SSE-KMS object or a new secret version: boot fails on AccessDenied"),
    Mutant(
        "postgres-port", "egress", "templates_src/gitlab_cfn/compile/tiers/security_groups.py",
        '"postgres": 5432,', '"postgres": 5433,',
        ("tests/test_flows.py::test_every_build_passes_the_flow_check",),
        "the servers' egress and the database's ingress open 5433: no server reaches RDS"),
    Mutant(
        "private-route-narrowed", "egress", "templates_src/gitlab_cfn/compile/tiers/network.py",
        '            DestinationCidrBlock="0.0.0.0/0",\n            NatGatewayId=Ref(nat),',
        '            DestinationCidrBlock="10.0.0.0/8",\n            NatGatewayId=Ref(nat),',
        ("tests/test_flows.py::test_every_build_passes_the_flow_check",),
        "private servers cannot reach Secrets Manager, S3 or the package repository through the NAT"),
    Mutant(
        "praefect-port", "port", "scripts/praefect.sh",
        "PRAEFECT_PORT=2305\n", "PRAEFECT_PORT=2306\n",
        ("tests/test_boot_praefect.py::test_two_praefect_servers_create_the_database_once_and_migrate_once_under_the_lock",),
        "the internal load balancer's health checks on 2305 fail: no repository is reachable"),
    Mutant(
        "praefect-auto-migrate", "lock order", "scripts/praefect.sh",
        "praefect['auto_migrate'] = false", "praefect['auto_migrate'] = true",
        ("tests/test_boot_praefect.py::test_two_praefect_servers_create_the_database_once_and_migrate_once_under_the_lock",),
        "every Praefect server migrates the Praefect database on every reconfigure, outside the lock"),
    Mutant(
        "smtp-password-region", "secret", "templates_src/gitlab_cfn/compile/functions/ses_smtp_password.py",
        'smtp_password(key["SecretAccessKey"], region)]', 'smtp_password(key["SecretAccessKey"], "us-east-1")]',
        ("tests/test_ses_credentials.py::test_create_makes_a_key_and_writes_its_smtp_credentials_to_the_secret",),
        "SES SMTP passwords are per region: outside us-east-1 every mail is refused (535 Authentication Credentials Invalid)"),
    Mutant(
        "smtp-sender-domain", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/email.py",
        'add("SenderIsDomain", Equals(Select(0,', 'add("SenderIsDomain", Equals(Select(1,',
        ("tests/test_email.py::test_the_smtp_user_may_send_raw_email_from_the_sender_only",),
        "a domain sender's SMTP user may send from no identity: every mail is refused"),
    Mutant(
        "standin-failed-answer", "stand-in model", "templates_src/gitlab_cfn/standin/custom_resources.py",
        '        if answer["Status"] != "SUCCESS":\n            raise ResourceCreateFailed(',
        '        if answer["Status"] == "NEVER":\n            raise ResourceCreateFailed(',
        ("tests/test_standin_custom_resources.py::test_a_failed_answer_fails_the_create_and_the_stack_rolls_back",),
        "the stand-in completes a stack whose credentials function failed, where CloudFormation rolls it back"),
    Mutant(
        "gitaly-backup-no-region", "object storage", "scripts/gitaly.sh",
        "printf 's3://%s?region=%s' \"$1\" \"$AWS_REGION\"", "printf 's3://%s' \"$1\"",
        ("tests/test_boot_gitaly_cluster.py::test_a_cluster_node_serves_its_node_storage_with_the_internal_token",),
        "Gitaly's S3 driver signs for another region than the bucket's: every server-side backup fails"),
    Mutant(
        "backup-server-side-always", "object storage", "scripts/lib/backup.sh",
        'if [[ "${BACKUP_SERVER_SIDE:-}" == true ]]; then\n    backup_server_side',
        'if true; then\n    backup_server_side',
        ("tests/test_backup.py::test_a_cluster_backs_up_server_side_only_when_every_node_has_a_destination",),
        "the POC's Gitaly server, which has no backup destination, is asked for server-side backups: every night "
        "fails, then falls back, and warns of a cluster that does not exist"),
    Mutant(
        "backup-fallback-on-any-failure", "object storage", "scripts/lib/backup.sh",
        '  if ! grep -qF "$BACKUP_NO_DESTINATION" "$out"; then', '  if false; then',
        ("tests/test_backup.py::test_a_server_side_backup_failing_for_another_reason_is_a_failure_without_fallback",),
        "a server-side backup that failed for any reason is retried through Praefect: a broken bucket or Gitaly "
        "is reported as a missing destination"),
    Mutant(
        "first-backup-on-every-server", "alarm", "scripts/lib/backup.sh",
        '  [[ -e "$request" ]] || return 0\n  rm -f "$request"', '  rm -f "$request"',
        ("tests/test_backup.py::test_the_first_server_of_a_new_stack_backs_up_once_in_the_background",),
        "every server's every boot starts a backup: a scale-out or a rolling upgrade runs backups in the day"),
    Mutant(
        "first-backup-in-the-boot", "alarm", "scripts/lib/backup.sh",
        '    </dev/null >>"$ROOT$BACKUP_LOG" 2>&1 &', '    </dev/null >>"$ROOT$BACKUP_LOG" 2>&1',
        ("tests/test_backup.py::test_the_first_server_of_a_new_stack_backs_up_once_in_the_background",),
        "the first server waits for a whole backup before it signals: a large restored stack times out its creation"),
    Mutant(
        "gitaly-backup-no-list", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/policies.py",
        'Statement(Sid="MissingKeysAreNotFound", Effect=Allow, Action=[s3.ListBucket], Resource=[bucket]),\n',
        "",
        ("tests/test_access.py::test_gitaly_server_side_backups_are_decided_for_every_cluster_node",),
        "a backup not made yet answers 403, not 404: Gitaly's first server-side backup of each repository fails"),
    Mutant(
        "backup-alarm-breaching", "alarm", "templates_src/gitlab_cfn/compile/tiers/monitoring.py",
        'TreatMissingData="missing",\n        InsufficientDataActions', 'TreatMissingData="breaching",\n        InsufficientDataActions',
        ("tests/test_backup_alarm.py::test_a_healthy_new_stack_hears_only_the_truth",),
        "every new stack e-mails a backup alarm the moment it is created"),
    # The monitoring server (config monitoring.node).
    Mutant(
        "exporter-port", "port", "scripts/lib/exporters.sh",
        "\"$(ruby_string \"$host:9100\")\"", "\"$(ruby_string \"$host:9101\")\"",
        ("tests/test_boot_monitoring.py::test_scraped_exporters_listen_on_the_private_address_at_the_scraped_ports",),
        "node_exporter listens where Prometheus does not scrape and its security group does not open: every node target down"),
    Mutant(
        "exporters-on-localhost", "monitoring", "scripts/lib/exporters.sh",
        "  if [[ \"${METRICS_SCRAPED:-}\" != true ]]; then", "  if [[ \"${METRICS_SCRAPED:-}\" != yes ]]; then",
        ("tests/test_boot_monitoring.py::test_scraped_exporters_listen_on_the_private_address_at_the_scraped_ports",),
        "the exporters stay on localhost: the monitoring server scrapes nothing"),
    Mutant(
        "scrape-port", "monitoring", "scripts/monitoring.sh",
        "      'port' => $port,", "      'port' => 9100,",
        ("tests/test_boot_monitoring.py::test_the_monitoring_server_runs_prometheus_discovering_the_stacks_servers",),
        "every job scrapes node_exporter's port: Workhorse, Puma, Sidekiq, Gitaly and Praefect metrics are never collected"),
    Mutant(
        "scrape-rule-to-one-group", "egress", "templates_src/gitlab_cfn/compile/tiers/security_groups.py",
        "        g.allow(job.group, \"Monitoring\", f\"{job.exporter}metrics\",",
        "        g.allow(\"App\", \"Monitoring\", f\"{job.exporter}metrics\",",
        ("tests/test_prometheus.py::test_the_checks_pass_with_the_scrape_flows_and_the_discovery_call",),
        "the exporter ports are opened on the application servers only: Gitaly's and Praefect's scrapes time out"),
    Mutant(
        "discovery-action", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/tiers/prometheus.py",
        "Action=[ec2_actions.DescribeInstances, ec2_actions.DescribeAvailabilityZones],",
        "Action=[ec2_actions.DescribeTags, ec2_actions.DescribeAvailabilityZones],",
        ("tests/test_prometheus.py::test_the_checks_pass_with_the_scrape_flows_and_the_discovery_call",),
        "Prometheus's EC2 service discovery is denied: no target at all"),
    Mutant(
        "discovery-no-zones", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/tiers/prometheus.py",
        "Action=[ec2_actions.DescribeInstances, ec2_actions.DescribeAvailabilityZones],",
        "Action=[ec2_actions.DescribeInstances],",
        ("tests/test_prometheus.py::test_the_checks_pass_with_the_scrape_flows_and_the_discovery_call",),
        "newer Prometheus's EC2 discovery fails its credential check (DescribeAvailabilityZones): no target at all"),
    Mutant(
        "exporter-status-lost", "monitoring", "scripts/gitaly.sh",
        "  exporters=$(exporters_gitlab_rb gitaly) || return\n  end=$(gitaly_configuration_end) || return\n",
        "",
        ("tests/test_boot_gitaly_cluster.py::test_no_private_address_for_the_exporters_fails_the_boot_in_one_line",),
        "a Gitaly node without a private address boots with exporters on ':9236' and reports success"),
    Mutant(
        "kubernetes-jobs", "monitoring", "scripts/monitoring.sh",
        "prometheus['monitor_kubernetes'] = false\n", "",
        ("tests/test_boot_monitoring.py::test_the_monitoring_server_runs_prometheus_discovering_the_stacks_servers",),
        "the package adds its Kubernetes jobs, which need a cluster: Prometheus fails to start"),
    Mutant(
        "restore-master-user", "restore", "templates_src/gitlab_cfn/compile/tiers/database.py",
        '("DBName", "KmsKeyId", "MasterUsername", "MasterUserPassword")', '("DBName", "KmsKeyId", "MasterUserPassword")',
        ("tests/test_restore.py::test_a_destroyed_stacks_data_comes_back_in_a_new_stack",),
        "CloudFormation refuses MasterUsername with DBSnapshotIdentifier: every restore rolls back"),
    Mutant(
        "restore-new-key-grant", "IAM/KMS grant", "templates_src/gitlab_cfn/compile/tiers/storage.py",
        'PolicyDocument=kms_use(Ref("RestoreKmsKeyArn"), ["s3"], region=buckets_region(tier)),',
        'PolicyDocument=kms_use(GetAtt("DataKey", "Arn"), ["s3"], region=buckets_region(tier)),',
        ("tests/test_restore.py::test_a_destroyed_stacks_data_comes_back_in_a_new_stack",),
        "the restored servers cannot decrypt a single object of the old buckets (AccessDenied on kms:Decrypt)"),
    Mutant(
        "restore-region-copy-without-key", "IAM/KMS grant", "templates_src/gitlab_cfn/operate/restore_region.py",
        "KmsKeyId=key, SourceRegion=from_region, CopyTags=False", "SourceRegion=from_region, CopyTags=False",
        ("tests/test_restore_region.py::test_a_stack_destroyed_in_one_region_comes_back_in_another",),
        "AWS refuses an encrypted DB snapshot copied to another region without a key there"),
    Mutant(
        "restore-region-s3-connection", "region", "scripts/gitlab-app.sh",
        """gitlab_rails['object_store']['connection'] = { 'provider' => 'AWS', 'region' => $(ruby_string "$BUCKETS_REGION")""",
        """gitlab_rails['object_store']['connection'] = { 'provider' => 'AWS', 'region' => $(ruby_string "$AWS_REGION")""",
        ("tests/test_restore_region.py::test_gitlabs_object_storage_names_the_old_buckets_region",),
        "GitLab signs its object-storage requests for the new region; the old buckets are in another"),
    Mutant(
        "restore-old-shell-secret", "secret", "scripts/gitlab-app.sh",
        'if secrets.get("gitlab_shell", {}).get("secret_token") == os.environ["SHELL_SECRET"]:\n    sys.exit(0)',
        'if secrets.get("gitlab_shell", {}).get("secret_token"):\n    sys.exit(0)',
        ("tests/test_boot_app.py::test_a_restored_stacks_first_server_keeps_the_old_keys_takes_its_shell_secret_and_migrates",),
        "a restored GitLab refuses Gitaly's calls (git push authorisation) signed with the new stack's shell secret"),
)


def apply(root: Path, mutant: Mutant) -> None:
    path = root / mutant.path
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.name}: its text occurs {count} times in {mutant.path} (must be once)")
    path.write_text(text.replace(mutant.old, mutant.new))


def scratch_copy(into: Path) -> Path:
    """The repository's tracked and untracked-but-not-ignored files, and links to its tool venvs."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    root = into / "repo"
    for name in filter(None, files):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            target = root / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for venv in VENVS:
        if (REPO / venv).exists():
            (root / venv).symlink_to(REPO / venv)
    return root


FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+(?: - .{0,160})?)", re.M)


def run(mutant: Mutant, workdir: Path) -> tuple[bool, str, float]:
    root = scratch_copy(workdir / mutant.name)
    apply(root, mutant)
    env = {**os.environ, "PYTHONPATH": str(root / "templates_src")}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(root / ".venv" / "bin" / "python"), "-m", "pytest", "-x", "-q", "-rfE",
         "-p", "no:cacheprovider", *mutant.tests],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate()
    except KeyboardInterrupt:
        # pytest stops its servers (PostgreSQL, Redis, the stand-in) on SIGINT; a kill would not.
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    elapsed = time.perf_counter() - started
    failed = FAILED.findall(result.stdout)
    killed = result.returncode == 1 and bool(failed)
    if result.returncode not in (0, 1):
        # Collection errors, interrupted runs or a missing tool prove nothing about the mutant.
        raise SystemExit(f"mutant {mutant.name}: pytest exit {result.returncode}\n{result.stdout[-2000:]}")
    return killed, (failed[0] if failed else ""), elapsed


def _terminated(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a cancelled job) ends the run as Ctrl-C does: the scratch copies are removed.
    signal.signal(signal.SIGTERM, _terminated)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutants of this kind or name only")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only in (None, m.kind, m.name)]
    if not chosen:
        kinds = sorted({m.kind for m in MUTANTS} | {m.name for m in MUTANTS})
        print(f"mutants: --only: no mutant of that kind or name (allowed: {', '.join(kinds)})", file=sys.stderr)
        return 2
    survivors = []
    with tempfile.TemporaryDirectory(prefix="gitlab-cfn-mutants-") as tmp:
        for mutant in chosen:
            killed, test, elapsed = run(mutant, Path(tmp))
            verdict = f"killed by {test}" if killed else "SURVIVED"
            print(f"{mutant.kind:15} {mutant.name:24} {verdict} ({elapsed:.0f} s)", flush=True)
            if not killed:
                survivors.append(mutant)
            shutil.rmtree(Path(tmp) / mutant.name, ignore_errors=True)
    for mutant in survivors:
        print(f"mutants: {mutant.name} survived {', '.join(mutant.tests)}: {mutant.why}", file=sys.stderr)
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
