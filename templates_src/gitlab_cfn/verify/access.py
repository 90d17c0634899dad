"""What each server's boot scripts ask of AWS, and whether its role may.

For every role of ``userdata.ROLES`` the boot scripts (``scripts/``: the libraries, the
role script, and ``bootstrap.sh`` for the roles that boot through it) are read for their
AWS calls: ``aws SERVICE COMMAND ...`` lines, calls through functions that pass
``"$@"`` on to ``aws`` (``aws_call``, ``boot_aws``), calls through functions that fill a
call's options from their own arguments (``secret_string "$DB_SECRET_ARN"``), and the
``CLIENTS`` that are not the AWS CLI (``cfn-signal``). Each call is mapped by ``CALLS``
to the IAM actions it needs and the resource it names, read from the user data preamble
of each server of that role in the built templates (``stackmodel``). A call that
``CALLS`` does not know, or whose option names a variable the preamble does not
export, is a finding: a new ``aws`` line in a script cannot go unchecked.

Besides the CLI calls, GitLab itself uses every ``BUCKET_*`` of the preamble as object
storage (``OBJECT_STORAGE``), with the actions of GitLab's guide.

Each request is evaluated against the role's identity policies (inline, ``AWS::IAM::Policy``
attached by name, AWS managed policies from ``data/aws-managed-policies.json``) and the
resource's policy (bucket policies, secret resource policies); a request to a KMS key
must also be allowed by the key policy, as KMS requires. KMS use that a service makes
on the caller's behalf is a request of its own: a secret encrypted with a customer
managed key needs ``kms:Decrypt`` (read) or ``kms:GenerateDataKey`` (write) with
``kms:ViaService`` ``secretsmanager.<region>.amazonaws.com``; an object in a bucket whose
default encryption is SSE-KMS the same through ``s3.<region>.amazonaws.com``
(docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html,
docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html).

A call counts for the servers that reach it: role branches (``if [[ "$ROLE" == X ]]``) and
branches on optional user data (``if [[ -n "${VAR:-}" ]]``) are followed (``_reachable``).

The evaluator is ``policy.authorize`` (why not a library: see there).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from gitlab_cfn.compile import userdata
from gitlab_cfn.verify import policy as iam_policy
from gitlab_cfn.verify.lint import Finding
from gitlab_cfn.verify.stackmodel import ACCOUNT, REGION, Model, Stack

MANAGED = Path(__file__).resolve().parent.parent / "data" / "aws-managed-policies.json"


# -- the calls in the scripts -------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One AWS request a script makes: where, what, and its options as written."""
    role: str
    where: str                      # scripts/<file>:<line>
    service: str
    command: str
    options: tuple[tuple[str, str], ...]
    positional: tuple[str, ...] = ()
    when: tuple[tuple[str, bool], ...] = ()   # (VARIABLE, must be set) of the enclosing ifs

    def runs_with(self, values: dict) -> bool:
        """Whether a server with these user data values takes the branch the call is on."""
        return all(bool(values.get(name)) == present for name, present in self.when)

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


# Programs other than the AWS CLI that call AWS: name -> (service, command).
# The CloudWatch agent (scripts/lib/cloudwatch.sh: configure_cloudwatch_agent ROLE starts it) ships
# the role's log files and publishes its metrics with the server's role: pseudo-service
# cloudwatch-agent, whose requests are ``_agent``'s.
# Gitaly's server-side backups (scripts/gitaly.sh: gitaly_backup_url BUCKET puts the bucket into
# Gitaly's go_cloud_url): pseudo-service gitaly-backup-sink, whose requests are ``_backup_sink``'s.
# Prometheus on the monitoring server (scripts/monitoring.sh: start_prometheus --region R starts it)
# finds its targets with EC2's DescribeInstances (ec2_sd_configs): ``_describe_instances``.
CLIENTS = {"cfn-signal": ("cloudformation", "signal-resource"),
           "configure_cloudwatch_agent": ("cloudwatch-agent", "start"),
           "gitaly_backup_url": ("gitaly-backup-sink", "open"),
           "start_prometheus": ("ec2", "describe-instances")}
_FUNCTION = re.compile(r"^(\w[\w-]*)\(\)\s*\{\s*$")
_ONE_LINE_FUNCTION = re.compile(r"^(\w[\w-]*)\(\)\s*\{\s*(.*?);?\s*\}\s*$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, comments dropped, with their first line number."""
    out, buffer, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not buffer:
            start = number
            if line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        out.append((start, buffer + line))
        buffer = ""
    if buffer:
        out.append((start, buffer))
    return out


def _command_words(rest: str) -> list[str]:
    """The words of one command, up to where the shell would end it (an unquoted ) | ; & < >)."""
    quote, end = None, len(rest)
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in ")|;&<>":
            end = i
            break
    try:
        return shlex.split(rest[:end])
    except ValueError:
        return rest[:end].split()


def _invocations(line: str, name: str) -> list[list[str]]:
    """The argument words of every invocation of ``name`` on a line."""
    found = []
    if name not in line:
        return found
    for match in re.finditer(rf"(?:^|(?<=[\s(!;|&`]))({re.escape(name)})\s+(.*)", line):
        before = line[:match.start(1)]
        if before.count('"') % 2 or before.count("'") % 2:
            continue            # inside a string: a log message, not a command
        if re.search(r"(command|type|which|hash)\s+(-\w+\s+)*$", before):
            continue            # asks whether the program exists: no call
        found.append(_command_words(match.group(2)))
    return found


@dataclass
class _Function:
    name: str
    file: str
    lines: list[tuple[int, str]] = field(default_factory=list)


def _functions(sources: dict[str, str]) -> dict[str, _Function]:
    functions: dict[str, _Function] = {}
    for file, text in sources.items():
        current = None
        for number, line in _logical_lines(text):
            match = _FUNCTION.match(line)
            if match and current is None:
                current = functions.setdefault(match.group(1), _Function(match.group(1), file))
                continue
            short = _ONE_LINE_FUNCTION.match(line)
            if short and current is None:
                functions.setdefault(short.group(1), _Function(short.group(1), file)).lines.append(
                    (number, short.group(2)))
                continue
            if current is not None:
                if line.rstrip() == "}":
                    current = None
                else:
                    current.lines.append((number, line))
    return functions


# [[ "$ROLE" == gitlab-sidekiq ]] (or BOOT_ROLE, != ): a branch taken by some roles only.
_ROLE_TEST = re.compile(r'^\[\[\s*"?\$\{?(?:BOOT_)?ROLE\}?"?\s*(==|!=|=)\s*"?([\w-]+)"?\s*\]\]$')
_IF = re.compile(r"^\s*(if|elif)\s+(.*?);\s*then\s*$")
_OPEN = re.compile(r"(^\s*(while|until|for|select)\b.*\bdo\s*$)|(^\s*case\b.*\bin\s*$)")
_CLOSE = re.compile(r"^\s*(done|esac)\b")
_LEAVE = re.compile(r"^\s*(return|exit)\b")


_SET_TEST = re.compile(r'^\[\[\s*-(n|z)\s+"?\$\{?([A-Z][A-Z0-9_]*)(?::-)?\}?"?\s*\]\]$')


def _test(condition: str) -> tuple | None:
    """A condition the check follows: ("role", op, role) or ("set", VARIABLE, is set); None otherwise."""
    match = _ROLE_TEST.match(condition.strip())
    if match:
        return ("role", "==" if match.group(1) in ("==", "=") else "!=", match.group(2))
    match = _SET_TEST.match(condition.strip())
    if match:
        return ("set", match.group(2), match.group(1) == "n")
    return None


def _negated(test: tuple | None) -> tuple | None:
    if test is None:
        return None
    if test[0] == "role":
        return ("role", "!=" if test[1] == "==" else "==", test[2])
    return ("set", test[1], not test[2])


def _reachable(sources: dict[str, str], functions: dict[str, _Function], role: str) -> dict[tuple[str, int], tuple]:
    """The lines (file, number) a server of ``role`` can run, each with the preamble variables
    that must be set (or unset) for it to run.

    Role branches are followed: inside ``if [[ "$ROLE" == X ]]; then`` only role X runs,
    in its ``else`` the others; after a ``return``/``exit`` that only some roles reach (every
    enclosing ``if`` a role test), the rest of the function is not theirs. A line inside
    ``if [[ -n "${VAR:-}" ]]`` runs only on servers whose user data sets VAR (``-z``: does not).
    Other conditions may go either way. A function runs when a line that runs calls it;
    lines outside any function run. (A guard around a function's call does not carry into it.)
    """
    def walk(lines: list[tuple[int, str]]) -> list[tuple[int, str, tuple]]:
        frames: list[list] = []      # [kind, test or None]
        dead = False
        out = []
        for number, line in lines:
            opened = _IF.match(line)
            stripped = line.strip()
            if opened and opened.group(1) == "if":
                frames.append(["if", _test(opened.group(2))])
            elif opened and frames:                # elif: a new condition, the earlier ones false
                frames[-1][1] = None
            elif stripped == "else" and frames and frames[-1][0] == "if":
                frames[-1][1] = _negated(frames[-1][1])
            elif stripped == "fi" and frames:
                frames.pop()
            elif _OPEN.match(line):
                frames.append(["loop", None])
            elif _CLOSE.match(line) and frames:
                frames.pop()
            tests = [t for _, t in frames if t]
            active = all(_holds(t, role) for t in tests if t[0] == "role")
            if active and not dead:
                out.append((number, line, tuple((t[1], t[2]) for t in tests if t[0] == "set")))
                if _LEAVE.match(line) and all(t and t[0] == "role" for _, t in frames):
                    dead = True                    # this role leaves here: the rest is not its
        return out

    body = {(f.file, n) for f in functions.values() for n, _ in f.lines}
    heads = set()
    for file, text in sources.items():
        heads |= {(file, n) for n, line in _logical_lines(text)
                  if _FUNCTION.match(line) or _ONE_LINE_FUNCTION.match(line)}
    reachable: dict[tuple[str, int], tuple] = {}
    pending = []
    for file, text in sources.items():
        top = [(n, line) for n, line in _logical_lines(text)
               if (file, n) not in body and (file, n) not in heads and line.strip() != "}"]
        pending += [(file, *entry) for entry in walk(top)]
    started: set[str] = set()
    while pending:
        file, number, line, when = pending.pop()
        if (file, number) in reachable:
            continue
        reachable[(file, number)] = when
        for name, f in functions.items():
            if name in started or name not in line or not _calls(line, name):
                continue
            started.add(name)
            pending += [(f.file, *entry) for entry in walk(f.lines)]
    return reachable


def _holds(test: tuple, role: str) -> bool:
    return (role == test[2]) if test[1] == "==" else (role != test[2])


def _calls(line: str, name: str) -> bool:
    for match in re.finditer(rf"(?:^|(?<=[\s(!;|&`]))({re.escape(name)})(?=$|[\s);|&`])", line):
        before = line[:match.start(1)]
        if not (before.count('"') % 2 or before.count("'") % 2) or "$(" in before.rsplit('"', 1)[-1]:
            return True
    return False


def _aws_words(words: list[str]) -> tuple[str, str, dict[str, str], list[str]] | None:
    """(service, command, options, positional) of the words after ``aws``; None for ``"$@"``."""
    if words[:1] == ["$@"]:
        return None
    if len(words) < 2:
        return ("?", " ".join(words), {}, [])
    service, command, rest = words[0], words[1], words[2:]
    options, positional, i = {}, [], 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("--"):
            if "=" in word:
                key, value = word.split("=", 1)
                options[key] = value
            elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                options[word] = rest[i + 1]
                i += 1
            else:
                options[word] = ""
        else:
            positional.append(word)
        i += 1
    return service, command, options, positional


def _substitute(word: str, args: list[str]) -> str:
    return re.sub(r"\$\{?([1-9])\}?", lambda m: args[int(m.group(1)) - 1] if int(m.group(1)) <= len(args) else "",
                  word)


@lru_cache(maxsize=None)
def role_sources(role: str) -> tuple[tuple[str, str], ...]:
    """(file, text) of everything a server of ``role`` runs."""
    files = list(userdata.ROLES[role])
    if role in userdata.BOOTSTRAPPED:
        files.insert(0, userdata.BOOTSTRAP)
    return tuple((f"scripts/{name}", (userdata.SCRIPTS_DIR / name).read_text()) for name in files)


def script_calls(role: str, sources: tuple[tuple[str, str], ...] | None = None) -> list[Call]:
    """Every AWS request the scripts of ``role`` make, resolved through wrapper functions."""
    return list(_script_calls(role, tuple(sources) if sources is not None else role_sources(role)))


@lru_cache(maxsize=64)
def _script_calls(role: str | None, sources: tuple[tuple[str, str], ...]) -> tuple[Call, ...]:
    sources = dict(sources)
    functions = _functions(sources)
    # Functions passing "$@" to aws are aws itself; others whose aws options use $1..$9 are templates.
    aliases = {"aws"} | {f.name for f in functions.values()
                         if any(words[:1] == ["$@"] for _, line in f.lines for words in _invocations(line, "aws"))}
    templates: dict[str, list[tuple[str, str, str, dict, list]]] = {}
    body_lines = {(f.file, n) for f in functions.values() for n, _ in f.lines}

    def raw_calls(file: str, lines: list[tuple[int, str]]) -> list[tuple[str, str, str, dict, list]]:
        calls = []
        for number, line in lines:
            for name in sorted(aliases):
                for words in _invocations(line, name):
                    parsed = _aws_words(words)
                    if parsed:
                        calls.append((f"{file}:{number}", *parsed))
            for client, (service, command) in CLIENTS.items():
                for words in _invocations(line, client):
                    parsed = _aws_words([service, command] + words)
                    calls.append((f"{file}:{number}", *parsed))
            for name, calls_of in list(templates.items()):
                for words in _invocations(line, name):
                    for where, service, command, options, positional in calls_of:
                        calls.append((f"{file}:{number}", service, command,
                                      {k: _substitute(v, words) for k, v in options.items()},
                                      [_substitute(p, words) for p in positional]))
        return calls

    for _ in range(len(functions) + 1):     # wrappers of wrappers: until nothing changes
        changed = False
        for f in functions.values():
            if f.name in aliases:
                continue
            calls = [c for c in raw_calls(f.file, f.lines)
                     if any(re.search(r"\$\{?[1-9]", v) for v in list(c[3].values()) + list(c[4]))]
            if calls and templates.get(f.name) != calls:
                templates[f.name] = calls
                changed = True
        if not changed:
            break
    out = []
    if role is None:     # every line, reachable or not: for the mapping check
        reachable = {(file, n): () for file, text in sources.items() for n, _ in _logical_lines(text)}
    else:
        reachable = _reachable(sources, functions, role)
    for file, text in sources.items():
        lines = [(n, line) for n, line in _logical_lines(text) if (file, n) in reachable
                 and ((file, n) not in body_lines or not _in_template(functions, templates, aliases, file, n))]
        for where, service, command, options, positional in raw_calls(file, lines):
            when = reachable[(file, int(where.rsplit(":", 1)[1]))]
            out.append(Call(role, where, service, command, tuple(sorted(options.items())), tuple(positional), when))
    return tuple(sorted(set(out), key=lambda c: (c.where, c.service, c.command, c.options)))


def _in_template(functions, templates, aliases, file: str, number: int) -> bool:
    """The line is in the body of a wrapper or alias (its calls count where the wrapper is called)."""
    for f in functions.values():
        if f.file == file and any(n == number for n, _ in f.lines):
            return f.name in templates or f.name in aliases
    return False


# -- what each call needs -----------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One IAM authorisation: an action on a resource, with its request context."""
    action: str
    resource: str
    context: tuple[tuple[str, Any], ...] = ()
    why: str = ""


class Unresolved(Exception):
    pass


@dataclass
class Server:
    """One server of a role in the build: its user data values, role and where it runs."""
    role: str
    stack: Stack
    logical: str                     # the instance, or the launch template
    values: dict[str, Any]
    role_stack: Stack | None = None
    role_logical: str | None = None
    signalled: tuple[str, ...] = ()  # resources whose signal this server may send


def _secret_kms(model: Model, secret_arn: str, action: str, why: str) -> list[Request]:
    found = model.owner(secret_arn)
    if not found:
        raise Unresolved(f"{secret_arn} is no secret of the stack")
    stack, logical = found
    key = model.props(stack, logical).get("KmsKeyId")
    if not key:
        return []                    # aws/secretsmanager: the service's own key, no grant needed
    return [Request(action, _key_arn(model, key), (
        ("kms:ViaService", f"secretsmanager.{REGION}.amazonaws.com"),
        ("kms:EncryptionContext:SecretARN", secret_arn), ("kms:CallerAccount", ACCOUNT)),
        f"{why} (the key of {secret_arn})")]


def _key_arn(model: Model, key: str) -> str:
    if key.startswith("arn:"):
        return key
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}"


def _secret_read(model, call, value):
    arn = value(call.option("--secret-id"))
    why = f"{call.where}: aws secretsmanager get-secret-value"
    if not model.owner(arn) and arn in {str(v) for v in model.root.params.values()}:
        # A secret the user gives by a parameter (EmailSmtpSecretArn, lib/email.sh): its key is
        # the user's choice, so only the read grant is the stack's to check.
        return [Request("secretsmanager:GetSecretValue", arn, (), why)]
    return [Request("secretsmanager:GetSecretValue", arn, (), why)] + _secret_kms(model, arn, "kms:Decrypt", why)


def _secret_write(model, call, value):
    arn = value(call.option("--secret-id"))
    why = f"{call.where}: aws secretsmanager put-secret-value"
    return [Request("secretsmanager:PutSecretValue", arn, (), why)] + _secret_kms(model, arn, "kms:GenerateDataKey", why)


def _parameter_read(model, call, value):
    name = value(call.option("--name"))
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name if name.startswith('/') else '/' + name}"
    return [Request("ssm:GetParameter", arn, (), f"{call.where}: aws ssm get-parameter")]


def _object_read(model, call, value):
    bucket, key = value(call.option("--bucket")), value(call.option("--key"))
    why = f"{call.where}: aws s3api get-object"
    return [Request("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", (), why)] + _bucket_kms(model, bucket, "kms:Decrypt", why)


def _bucket_kms(model: Model, bucket: str, action: str, why: str) -> list[Request]:
    for stack, logical, _ in model.resources("AWS::S3::Bucket"):
        if model.ref(stack, logical) != bucket:
            continue
        rules = (model.props(stack, logical).get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or []
        for rule in rules:
            default = rule.get("ServerSideEncryptionByDefault") or {}
            if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get("KMSMasterKeyID"):
                return [Request(action, _key_arn(model, default["KMSMasterKeyID"]), (
                    ("kms:ViaService", f"s3.{REGION}.amazonaws.com"), ("kms:CallerAccount", ACCOUNT)),
                    f"{why} (the key of bucket {bucket})")]
    return []                        # not a bucket of the stack (the published templates), or SSE-S3


def _tags(model, call, value):
    instance = value(call.option("--resources"))
    keys = [m.group(1) for m in re.finditer(r"Key=([^,]+)", call.option("--tags") or "")]
    return [Request("ec2:CreateTags", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance}",
                    (("aws:TagKeys", tuple(keys)),), f"{call.where}: aws ec2 create-tags")]


def _signal(model, call, value):
    # cfn-signal needs no IAM grant: "cfn-signal doesn't require credentials ... CloudFormation
    # checks for stack membership and limits the scope of the call to the stack that the
    # instance belongs to" (docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cfn-signal.html).
    # So the signal must name this server's own stack and a resource it belongs to.
    return [Request("cloudformation:SignalResource",
                    f"{value(call.option('--stack'))}/{value(call.option('--resource'))}", (("membership", True),),
                    f"{call.where}: cfn-signal")]


def _metric_put(model, call, value):
    # PutMetricData has no resource; the namespace is its condition key
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html).
    namespace = value(call.option("--namespace"))
    return [Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", namespace),),
                    f"{call.where}: aws cloudwatch put-metric-data")]


def _agent(model, call, value):
    """The CloudWatch agent of ``configure_cloudwatch_agent ROLE``: into each log group of the
    role's families (observability.ROLE_FAMILIES, which lib/cloudwatch.sh mirrors), a stream
    named after the instance; the memory and disk metrics into the stack's namespace (the
    agent's own calls: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/create-iam-roles-for-cloudwatch-agent.html)."""
    from gitlab_cfn.compile.observability import ROLE_FAMILIES

    why = f"{call.where}: CloudWatch agent"
    role = call.positional[0] if call.positional else ""
    if role not in ROLE_FAMILIES:
        raise Unresolved(f"{why}: role {role!r} has no log families (observability.ROLE_FAMILIES)")
    prefix = value("$LOG_GROUP_PREFIX")
    names = {model.props(s, lg).get("LogGroupName") for s, lg, _ in model.resources("AWS::Logs::LogGroup")}
    out = []
    for family in ROLE_FAMILIES[role]:
        group = f"{prefix}/{family}"
        if group not in names:
            raise Unresolved(f"{why}: log group {group} is not a log group of the stack (the agent may not create one)")
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
        out += [Request(a, arn, (), f"{why} ({family})") for a in ("logs:CreateLogStream", "logs:DescribeLogStreams")]
        out.append(Request("logs:PutLogEvents", f"{arn}:log-stream:{SELF_INSTANCE}", (), f"{why} ({family})"))
    stack = value("$stack")
    out.append(Request("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", f"gitlab-cfn/{stack}"),),
                       f"{why} (metrics)"))
    return out


def _backup_sink(model, call, value):
    """Gitaly writing and reading server-side repository backups in the bucket of its
    go_cloud_url: Gitaly's sink uses gocloud.dev/blob's NewWriter and NewReader only
    (gitlab-org/gitaly internal/backup/sink.go), whose S3 driver puts objects (in parts for
    large ones, aborting a failed upload) and gets them; a missing LATEST pointer must be a
    404, which S3 answers only to a caller that may list the bucket (API_GetObject.html);
    the bucket's key through S3 (policies.gitaly_backup_sink)."""
    why = f"{call.where}: Gitaly server-side backups"
    bucket = value(call.positional[0] if call.positional else None)
    out = [Request(a, f"arn:aws:s3:::{bucket}/@hashed/4e/07/4e07.git/LATEST", (), why)
           for a in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload")]
    out.append(Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", (), why))
    return out + _bucket_kms(model, bucket, "kms:GenerateDataKey", why) + _bucket_kms(model, bucket, "kms:Decrypt", why)


def _describe_instances(model, call, value):
    # DescribeInstances takes no resource-level permission: its resource is "*"
    # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html).
    # Prometheus's EC2 discovery also reads the region's zones (the zone ids of its targets, and
    # newer releases' credential check: DescribeAvailabilityZones, prometheus/prometheus
    # discovery/aws/ec2.go, refreshAZIDs and the discovery's start); same rule, resource "*".
    region = (("aws:RequestedRegion", value(call.option("--region"))),)
    return [Request(action, "*", region, f"{call.where}: Prometheus EC2 service discovery")
            for action in ("ec2:DescribeInstances", "ec2:DescribeAvailabilityZones")]


# (service, command) -> the requests a call makes. A call not here fails the check.
CALLS: dict[tuple[str, str], Callable] = {
    ("secretsmanager", "get-secret-value"): _secret_read,
    ("secretsmanager", "put-secret-value"): _secret_write,
    ("ssm", "get-parameter"): _parameter_read,
    ("s3api", "get-object"): _object_read,
    ("ec2", "create-tags"): _tags,
    ("cloudformation", "signal-resource"): _signal,
    ("cloudwatch", "put-metric-data"): _metric_put,
    ("cloudwatch-agent", "start"): _agent,
    ("gitaly-backup-sink", "open"): _backup_sink,
    ("ec2", "describe-instances"): _describe_instances,
}

# GitLab's object storage on every BUCKET_* of the preamble: the actions of GitLab's guide
# (doc/install/aws/_index.md, "Create an IAM Policy"), objects and bucket; KMS through S3
# when the bucket's default encryption is SSE-KMS (PutObject: GenerateDataKey, GetObject: Decrypt).
OBJECT_STORAGE = re.compile(r"^BUCKET_[A-Z0-9_]+$")
OBJECT_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                  "s3:ListMultipartUploadParts")
BUCKET_ACTIONS = ("s3:ListBucket", "s3:ListBucketMultipartUploads")

# Variables a script sets from what it read, not from the preamble: name -> how to find the value.
# The bootstrap reads the bundle's location from the SSM parameter BUNDLE_PARAMETER names
# (scripts/bootstrap.sh, boot_read_location).
DERIVED = {
    "BUNDLE_BUCKET": ("BUNDLE_PARAMETER", "bucket"),
    "BUNDLE_KEY": ("BUNDLE_PARAMETER", "key"),
    "BUNDLE_REGION": ("BUNDLE_PARAMETER", "region"),
    # lib/email.sh, smtp_secret_arn: the SES SMTP credentials' secret.
    "SMTP_SECRET_ARN": ("BUNDLE_PARAMETER", "smtp_secret_arn"),
    # scripts/bake-install.sh: the instance's own id, from the instance metadata service.
    "instance": ("IMDS", "instance-id"),
    # lib/cloudwatch.sh: /gitlab-cfn/<parent stack>/<LOG_GROUP_ID>, the parent stack's name from
    # BUNDLE_PARAMETER's; lib/backup.sh: that name ($stack).
    "LOG_GROUP_PREFIX": ("PARENT", "prefix"),
    "stack": ("PARENT", "name"),
}
BUNDLE_PARAMETER_NAME = re.compile(r"^/gitlab-cfn/([A-Za-z][A-Za-z0-9-]*)/[a-z-]+/boot-bundle$")


def _parent(server: Server, field_name: str) -> str:
    match = BUNDLE_PARAMETER_NAME.match(str(server.values.get("BUNDLE_PARAMETER", "")))
    if not match:
        raise Unresolved(f"the parent stack's name comes from $BUNDLE_PARAMETER, which the user data of "
                         f"{server.stack.file}:{server.logical} does not export as /gitlab-cfn/<stack>/<role>/boot-bundle")
    parent = match.group(1)
    if field_name == "name":
        return parent
    if "LOG_GROUP_PREFIX" in server.values:
        return str(server.values["LOG_GROUP_PREFIX"])
    if not re.match(r"^[0-9a-f]{8}$", str(server.values.get("LOG_GROUP_ID", ""))):
        raise Unresolved(f"$LOG_GROUP_PREFIX comes from $LOG_GROUP_ID, which the user data of "
                         f"{server.stack.file}:{server.logical} does not export as 8 hex characters")
    return f"/gitlab-cfn/{parent}/{server.values['LOG_GROUP_ID']}"
SELF_INSTANCE = "i-0123456789abcdef0"


def _resolver(model: Model, server: Server, call: Call) -> Callable[[str | None], str]:
    def value(word: str | None) -> str:
        if word is None:
            raise Unresolved(f"{call.where}: aws {call.service} {call.command}: an option it needs is not given")

        def one(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if name in server.values:
                return str(server.values[name])
            if name in DERIVED:
                source, field_name = DERIVED[name]
                if source == "IMDS":
                    return SELF_INSTANCE
                if source == "PARENT":
                    return _parent(server, field_name)
                if source not in server.values:
                    raise Unresolved(f"{call.where}: ${name} comes from ${source}, which the user data "
                                     f"of {server.stack.file}:{server.logical} does not export")
                return str(_parameter_json(model, server.values[source]).get(field_name, ""))
            raise Unresolved(f"{call.where}: ${name} is not exported by the user data of "
                             f"{server.stack.file}:{server.logical} (role {server.role})")
        return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", one, word)
    return value


def _parameter_json(model: Model, name: str) -> dict:
    for stack, logical, _ in model.resources("AWS::SSM::Parameter"):
        props = model.props(stack, logical)
        if props.get("Name") == name:
            try:
                return json.loads(props.get("Value", ""))
            except ValueError:
                raise Unresolved(f"SSM parameter {name} ({stack.file}:{logical}) does not hold JSON") from None
    raise Unresolved(f"no SSM parameter named {name} in the stack")


def requests(model: Model, server: Server, calls: list[Call]) -> tuple[list[Request], list[str]]:
    """The IAM requests of a server's calls and object storage, and the problems met."""
    out, problems = [], []
    for call in calls:
        if not call.runs_with(server.values):
            continue
        handler = CALLS.get((call.service, call.command))
        if handler is None:
            problems.append(f"{call.where}: aws {call.service} {call.command} is not mapped to IAM actions "
                            "(add it to CALLS in gitlab_cfn/verify/access.py)")
            continue
        try:
            out += handler(model, call, _resolver(model, server, call))
        except Unresolved as exc:
            problems.append(str(exc))
    for name, bucket in sorted(server.values.items()):
        if OBJECT_STORAGE.match(name):
            why = f"GitLab object storage ${name}"
            out += [Request(a, f"arn:aws:s3:::{bucket}/*", (), why) for a in OBJECT_ACTIONS]
            out += [Request(a, f"arn:aws:s3:::{bucket}", (), why) for a in BUCKET_ACTIONS]
            out += _bucket_kms(model, bucket, "kms:GenerateDataKey", why) + _bucket_kms(model, bucket, "kms:Decrypt", why)
    return out, problems


# -- the servers of the build -------------------------------------------------

def _preamble(node: Any) -> tuple[str, dict] | None:
    """(role, raw variables) of a gitlab-cfn user data, found inside its Fn::Base64/Join/Sub."""
    if isinstance(node, dict):
        sub = node.get("Fn::Sub")
        if isinstance(sub, list) and isinstance(sub[0], str):
            match = re.search(r"# gitlab-cfn user data \(([\w-]+)\)", sub[0])
            if match:
                return match.group(1), sub[1]
        for v in node.values():
            found = _preamble(v)
            if found:
                return found
    elif isinstance(node, list):
        for v in node:
            found = _preamble(v)
            if found:
                return found
    return None


def servers(model: Model) -> list[Server]:
    """Every instance and launch template with gitlab-cfn user data, with its role and values."""
    out = []
    for kind in ("AWS::EC2::Instance", "AWS::EC2::LaunchTemplate"):
        for stack, logical, resource in model.resources(kind):
            raw = resource.get("Properties") or {}
            data = raw.get("LaunchTemplateData", raw) if kind == "AWS::EC2::LaunchTemplate" else raw
            found = _preamble(data.get("UserData"))
            if not found:
                continue
            role, variables = found
            values = {k: model.value(stack, v) for k, v in variables.items()}
            server = Server(role, stack, logical, values)
            profile = model.value(stack, launch_data(model, stack, data).get("IamInstanceProfile"))
            if isinstance(profile, dict):
                profile = profile.get("Arn") or profile.get("Name")
            server.role_stack, server.role_logical = _role_of(model, profile)
            server.signalled = _signalled(model, stack, logical, kind)
            out.append(server)
    return out


def launch_data(model: Model, stack: Stack, data: dict) -> dict:
    """An instance's properties, completed by those of the launch template it launches from."""
    template = data.get("LaunchTemplate")
    if not template:
        return data
    ref = model.value(stack, template.get("LaunchTemplateId") or template.get("LaunchTemplateName"))
    for tstack, tlogical, resource in model.resources("AWS::EC2::LaunchTemplate"):
        if model.ref(tstack, tlogical) == ref:
            return {**(resource.get("Properties") or {}).get("LaunchTemplateData", {}), **data}
    return data


def _role_of(model: Model, profile: Any) -> tuple[Stack | None, str | None]:
    if not profile:
        return None, None
    for stack, logical, _ in model.resources("AWS::IAM::InstanceProfile"):
        if profile in (model.ref(stack, logical), model.get_att(stack, logical, "Arn")):
            roles = model.props(stack, logical).get("Roles") or []
            for rstack, rlogical, _ in model.resources("AWS::IAM::Role"):
                if model.ref(rstack, rlogical) in roles:
                    return rstack, rlogical
    return None, None


def _signalled(model: Model, stack: Stack, logical: str, kind: str) -> tuple[str, ...]:
    """(stack name/resource) that a server may signal: its instance, or its Auto Scaling group."""
    if kind == "AWS::EC2::Instance":
        return (f"{stack.name}/{logical}",)
    out = []
    for gstack, glogical, _ in model.resources("AWS::AutoScaling::AutoScalingGroup"):
        template = (model.props(gstack, glogical).get("LaunchTemplate") or {}).get("LaunchTemplateId")
        if template == model.ref(stack, logical):
            out.append(f"{gstack.name}/{glogical}")
    return tuple(out)


# -- policies -----------------------------------------------------------------

@lru_cache(maxsize=None)
def managed_policies() -> dict[str, dict]:
    return {e["arn"]: e["document"] for e in json.loads(MANAGED.read_text())}


def role_policies(model: Model, stack: Stack, logical: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """(label, document) of every identity policy of a role, and the problems met."""
    props = model.props(stack, logical)
    name = model.ref(stack, logical)
    out, problems = [], []
    for policy in props.get("Policies") or []:
        out.append((f"{stack.file}:{logical} policy {policy.get('PolicyName')}", policy["PolicyDocument"]))
    for arn in props.get("ManagedPolicyArns") or []:
        if arn in managed_policies():
            out.append((f"AWS managed policy {arn.rsplit('/', 1)[1]}", managed_policies()[arn]))
        else:
            found = None
            for pstack, plogical, _ in model.resources("AWS::IAM::ManagedPolicy"):
                if model.ref(pstack, plogical) == arn:
                    found = (f"{pstack.file}:{plogical}", model.props(pstack, plogical)["PolicyDocument"])
            if found:
                out.append(found)
            else:
                problems.append(f"{stack.file}:{logical}: managed policy {arn} is unknown to the access check "
                                f"(add its document to {MANAGED.name})")
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for pstack, plogical, _ in model.resources(kind):
            pprops = model.props(pstack, plogical)
            if name in (pprops.get("Roles") or []):
                out.append((f"{pstack.file}:{plogical}", pprops["PolicyDocument"]))
    return out, problems


def resource_policies(model: Model, resource: str) -> list[tuple[str, dict, str]]:
    """(label, document, kind) of the resource policies that govern a resource ARN."""
    out = []
    if resource.startswith("arn:aws:s3:::"):
        bucket = resource[len("arn:aws:s3:::"):].split("/", 1)[0]
        for stack, logical, _ in model.resources("AWS::S3::BucketPolicy"):
            props = model.props(stack, logical)
            if props.get("Bucket") == bucket:
                out.append((f"{stack.file}:{logical}", props["PolicyDocument"], "s3"))
    elif resource.startswith("arn:aws:secretsmanager:"):
        for stack, logical, _ in model.resources("AWS::SecretsManager::ResourcePolicy"):
            props = model.props(stack, logical)
            if props.get("SecretId") == resource:
                out.append((f"{stack.file}:{logical}", props["ResourcePolicy"], "secret"))
    elif resource.startswith("arn:aws:kms:"):
        for stack, logical, _ in model.resources("AWS::KMS::Key"):
            if model.get_att(stack, logical, "Arn") == resource:
                out.append((f"{stack.file}:{logical} key policy", model.props(stack, logical)["KeyPolicy"], "kms"))
    return out


def _is_our_key(model: Model, resource: str) -> bool:
    return any(model.get_att(s, l, "Arn") == resource for s, l, _ in model.resources("AWS::KMS::Key"))


# -- the check ----------------------------------------------------------------

@dataclass
class Decision:
    server: Server
    request: Request
    allowed: bool
    reason: str


def evaluate_server(model: Model, server: Server, calls: list[Call]) -> tuple[list[Decision], list[str]]:
    reqs, problems = requests(model, server, calls)
    if server.role_stack is None:
        if reqs:
            problems.append(f"{server.stack.file}:{server.logical} (role {server.role}) makes AWS calls "
                            "but has no instance profile with a role")
        return [], problems
    documents, more = role_policies(model, server.role_stack, server.role_logical)
    problems += more
    principal = model.get_att(server.role_stack, server.role_logical, "Arn")
    decisions = []
    for request in reqs:
        if dict(request.context).get("membership"):
            ok = request.resource in server.signalled
            decisions.append(Decision(server, request, ok,
                                      "" if ok else f"signals {request.resource}, but the server belongs to "
                                      f"{', '.join(server.signalled) or 'no resource with a signal'}"))
            continue
        if request.resource.startswith("arn:aws:kms:") and not _is_our_key(model, request.resource):
            problems.append(f"{request.why}: KMS key {request.resource} is not a key of the stack")
            continue
        context = {"aws:SecureTransport": "true", "aws:PrincipalArn": principal, "aws:PrincipalAccount": ACCOUNT,
                   "aws:RequestedRegion": REGION, "aws:PrincipalType": "AssumedRole", **dict(request.context)}
        resource_docs = resource_policies(model, request.resource)
        try:
            allowed, reason = iam_policy.authorize(
                principal, ACCOUNT, request.action, request.resource, context, documents,
                [(label, doc) for label, doc, _ in resource_docs],
                key_policy_required=request.resource.startswith("arn:aws:kms:"))
        except iam_policy.PolicyError as exc:
            problems.append(f"{request.why}: {exc}")
            continue
        decisions.append(Decision(server, request, allowed, reason))
    return decisions, problems


@dataclass
class AccessResult:
    decisions: list[Decision]
    findings: list[Finding]
    calls: dict[str, list[Call]]
    functions: list = field(default_factory=list)   # function_access.FunctionDecision


def check(model: Model, roles: dict | None = None, sources: dict[str, tuple] | None = None) -> AccessResult:
    """The access check of a model: every role's calls parsed, every server's requests decided."""
    roles = userdata.ROLES if roles is None else roles
    findings, decisions, calls = [], [], {}
    for role in roles:
        calls[role] = script_calls(role, (sources or {}).get(role))
        # Mapped or not is asked of every call in the scripts, also on branches no server takes.
        every = _script_calls(None, tuple((sources or {}).get(role) or role_sources(role)))
        for call in every:
            if (call.service, call.command) not in CALLS:
                findings.append(_finding(f"{call.where}: aws {call.service} {call.command} is not mapped to IAM "
                                         "actions (add it to CALLS in gitlab_cfn/verify/access.py)"))
    for server in servers(model):
        if server.role not in calls:
            findings.append(_finding(f"{server.stack.file}:{server.logical}: user data of role {server.role}, "
                                     "which userdata.ROLES does not know"))
            continue
        mapped = [c for c in calls[server.role] if (c.service, c.command) in CALLS]
        found, problems = evaluate_server(model, server, mapped)
        decisions += found
        findings += [_finding(f"{server.stack.file}:{server.logical} ({server.role}): {p}") for p in problems]
        for d in found:
            if not d.allowed:
                findings.append(_finding(
                    f"{server.stack.file}:{server.logical} ({server.role}): {d.request.why}: "
                    f"{d.request.action} on {d.request.resource} is denied: {d.reason}"))
    # The stack's Lambda functions (the SES SMTP credentials): verify/function_access.py.
    from gitlab_cfn.verify import function_access

    functions, problems = function_access.check(model, role_policies, resource_policies)
    findings += [_finding(p) for p in problems]
    return AccessResult(decisions, sorted(set(findings)), calls, functions)


def _finding(message: str) -> Finding:
    return Finding("access", 1, 1, "GLC020", "error", message)

