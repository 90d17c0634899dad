"""amazon-cloudwatch-agent-ctl, as strict as the agent about what the boot gives it.

The real agent (a Go program AWS ships as a .deb) cannot be installed offline. This
fake accepts only the control script's documented options
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/install-CloudWatch-Agent-commandline-fleet.html:
``-a fetch-config|append-config|start|stop|status``, ``-m ec2|onPremise|auto``,
``-c file:<path>|ssm:<name>|default``, ``-s``), and for ``fetch-config`` validates the
file against the agent's JSON schema (``cloudwatch_agent_schema.json`` beside it: the
parts of aws/amazon-cloudwatch-agent translator/config/schema.json the configuration
uses, with the same types, enums and bounds; every object closed where the agent's
is, and also where the agent's is open, so a misspelt key fails here) and checks that
every file it collects is a log GitLab or cloud-init writes (``LOG_FAMILIES``), that
every log group is under the stack's prefix, and that the metrics namespace is the
stack's. It also applies the agent's rule for ``aggregation_dimensions`` (below,
``rollup_problems``), which the schema cannot express: a set the real agent would
silently never publish is refused here. It records what it loaded; a refused
configuration exits 1 with the reason, as the agent's translator does.

Run as a program (``argv``), or with ``--check FILE`` by tests outside a server.
"""


import argparse
import json
import os
import sys
from pathlib import Path

# Beside this file in support/fakebin, which is also on sys.path when installed on a server.
SCHEMA = next(p for p in (Path(d) / "cloudwatch_agent_schema.json"
                          for d in [Path(__file__).resolve().parent, *sys.path]) if p.exists())


def gitlab_log_paths() -> set[str]:
    from gitlab_cfn.compile.observability import LOG_FAMILIES

    return {path for paths in LOG_FAMILIES.values() for path in paths}


# The dimensions the agent gives each metric plugin's data before any aggregation
# (aws/amazon-cloudwatch-agent at ab55b8daa, v1.300071.0+):
# - ``host`` unless ``metrics.append_dimensions`` is set (translator/translate/metrics/
#   ruleTagExclude.go: tagexclude host) or ``agent.omit_hostname`` is true;
# - the keys of ``metrics.append_dimensions`` and of the plugin's own ``append_dimensions``;
# - the plugin's tags: ``disk`` tags path, device, fstype and mode, of which the agent drops
#   mode always and device with ``drop_device`` (translator/translate/metrics/metrics_collect/
#   disk/ruleDropTags.go); ``mem`` has none.
PLUGIN_TAGS = {"mem": set(), "disk": {"path", "device", "fstype"}}


def raw_dimensions(config: dict) -> dict[str, set[str]]:
    metrics = config.get("metrics", {})
    common = set(metrics.get("append_dimensions", {}))
    if not metrics.get("append_dimensions") and not config.get("agent", {}).get("omit_hostname"):
        common.add("host")
    out = {}
    for plugin, settings in metrics.get("metrics_collected", {}).items():
        tags = set(PLUGIN_TAGS[plugin])
        if plugin == "disk" and settings.get("drop_device"):
            tags.discard("device")
        out[plugin] = common | set(settings.get("append_dimensions", {})) | tags
    return out


def rollup_problems(config: dict) -> list[str]:
    """Each ``aggregation_dimensions`` set must be published for some metric. The agent's
    output plugin (plugins/outputs/cloudwatch/cloudwatch.go, ``ProcessRollup``) adds a set to
    a metric only when the metric has every dimension of the set and more dimensions than the
    set has; otherwise it skips the set without a word, and an alarm on it never gets data."""
    raw = raw_dimensions(config)
    found = []
    for wanted in config.get("metrics", {}).get("aggregation_dimensions", []):
        if not any(set(wanted) <= dims and len(wanted) < len(dims) for dims in raw.values()):
            found.append(f"metrics/aggregation_dimensions: {wanted} is published for no metric (the agent adds a "
                         f"set only to a metric with every one of its dimensions and more; the metrics have "
                         + "; ".join(f"{p}: {sorted(d)}" for p, d in sorted(raw.items())) + ")")
    return found


def problems(config: dict, prefix: str | None = None) -> list[str]:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    found = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
             for e in sorted(jsonschema.Draft4Validator(schema).iter_errors(config), key=str)]
    if found:
        return found
    found += rollup_problems(config)
    known = gitlab_log_paths()
    for entry in config.get("logs", {}).get("logs_collected", {}).get("files", {}).get("collect_list", []):
        if entry["file_path"] not in known:
            found.append(f"file_path {entry['file_path']}: not a log GitLab or cloud-init writes")
        group = entry.get("log_group_name", "")
        if prefix is not None and not group.startswith(prefix + "/"):
            found.append(f"log_group_name {group}: not one of the stack's groups ({prefix}/...)")
    if prefix is not None and "metrics" in config:
        stack = prefix.removeprefix("/gitlab-cfn/").rsplit("/", 1)[0]
        if config["metrics"].get("namespace") != f"gitlab-cfn/{stack}":
            found.append(f"metrics namespace {config['metrics'].get('namespace')}: the policy allows gitlab-cfn/{stack} only")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="amazon-cloudwatch-agent-ctl")
    parser.add_argument("-a", dest="action", required=True,
                        choices=["fetch-config", "append-config", "remove-config", "start", "stop", "status",
                                 "set-log-level"])
    parser.add_argument("-m", dest="mode", default="ec2", choices=["ec2", "onPremise", "onprem", "auto"])
    parser.add_argument("-c", dest="config")
    parser.add_argument("-s", dest="start", action="store_true")
    parser.add_argument("--check", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.action in ("fetch-config", "append-config"):
        if not args.config or not (args.config.startswith(("file:", "ssm:")) or args.config == "default"):
            parser.error("-c must be file:<path>, ssm:<parameter> or default")
        if not args.config.startswith("file:"):
            parser.error("only file: configurations can be checked here")
        path = Path(args.config[len("file:"):])
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"amazon-cloudwatch-agent-ctl: cannot read {path}: {exc}\n")
            return 1
        found = problems(config, os.environ.get("LOG_GROUP_PREFIX"))
        if found:
            sys.stderr.write("".join(f"amazon-cloudwatch-agent-ctl: {path}: {p}\n" for p in found))
            return 1
        event = {"command": "amazon-cloudwatch-agent-ctl", "action": args.action, "config": str(path),
                 "started": args.start}
        if os.environ.get("GITLAB_CFN_FAKES_LOG"):  # a test outside a server names its own record
            with open(os.environ["GITLAB_CFN_FAKES_LOG"], "a") as f:
                f.write(json.dumps(event) + "\n")
        else:
            from fakelib import record
            record(**{k: v for k, v in event.items() if k != "command"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
