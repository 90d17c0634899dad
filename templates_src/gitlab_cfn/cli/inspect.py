"""``gitlab-cfn status``, ``outputs`` and ``events``: a deployed stack, nested stacks included."""

from __future__ import annotations

import argparse

from gitlab_cfn.cli.common import Endpoint, aws_arguments


def _client(aws, args):
    return aws.client("cloudformation", args.region)


def run_status(args: argparse.Namespace) -> int:
    import json

    from gitlab_cfn.operate import inspect

    with Endpoint(args) as aws:
        result = inspect.status(_client(aws, args), args.stack_name, args.region)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(inspect.status_text(result), end="")
    return 0


def run_outputs(args: argparse.Namespace) -> int:
    import json

    from gitlab_cfn.operate import inspect
    from gitlab_cfn.operate.deploy import outputs_table

    with Endpoint(args) as aws:
        found = inspect.outputs(_client(aws, args), args.stack_name, args.region)
    if not args.nested:
        found = {"": found[""]}
    if args.json:
        print(json.dumps(found[""] if not args.nested else {"stack": found[""],
                                                             "nested": {k: v for k, v in found.items() if k}},
                         indent=2, sort_keys=True))
        return 0
    parts = []
    for name, values in found.items():
        table = outputs_table(values)
        parts.append(table if not name else f"{name}\n" + "\n".join(f"  {line}" for line in table.splitlines()))
    print("\n".join(p for p in parts if p))
    return 0


def run_events(args: argparse.Namespace) -> int:
    import json

    from gitlab_cfn.errors import ConfigError
    from gitlab_cfn.operate import inspect

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: {args.limit}; give a whole number of at least 1")
    with Endpoint(args) as aws:
        found = inspect.events(_client(aws, args), args.stack_name, args.region, args.limit)
    if args.json:
        print(json.dumps(inspect.as_dicts(found), indent=2))
    else:
        for event in found:
            print(event.line())
    return 0


def register(sub) -> None:
    status = sub.add_parser(
        "status", help="the state of a deployed stack and its nested stacks, failing resource first",
        description="Show the stack's status and every nested stack's, with resources complete and total; "
                    "when something failed, the first failing resource of the deepest failing nested stack "
                    "comes first.")
    aws_arguments(status)
    status.set_defaults(func=run_status)

    outputs = sub.add_parser(
        "outputs", help="the outputs of a deployed stack",
        description="Print the stack's outputs (with --nested, every nested stack's too).")
    aws_arguments(outputs)
    outputs.add_argument("--nested", action="store_true", help="the nested stacks' outputs too")
    outputs.set_defaults(func=run_outputs)

    events = sub.add_parser(
        "events", help="the events of a deployed stack and its nested stacks, failing resource first",
        description="Print the events of the stack and of every nested stack, newest first, the event of "
                    "the failing resource (if any) at the top.")
    aws_arguments(events)
    events.add_argument("--limit", type=int, metavar="N", help="at most N events")
    events.set_defaults(func=run_events)
