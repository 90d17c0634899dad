"""cfn-signal with the options of AWS's helper scripts (aws-cfn-bootstrap): refuses others, records the signal.

On an instance the stand-in launched (the harness wrote cloud-init's
/var/lib/cloud/data/instance-id), it also sends the signal as the real one does:
CloudFormation's SignalResource, UniqueId the instance id (or -i), Status SUCCESS
for exit code 0 and FAILURE otherwise, to --url or the AWS endpoint the instance
uses (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/cfn-signal.html).
A refused signal fails as the real one does (exit 1), so the boot's retries run.
"""
import argparse
import os
import time
from pathlib import Path

from fakelib import fail, record

INSTANCE_ID = Path("/var/lib/cloud/data/instance-id")

parser = argparse.ArgumentParser(prog="cfn-signal")
parser.add_argument("-e", "--exit-code", type=int)
parser.add_argument("-s", "--success", choices=["true", "false"])
parser.add_argument("-r", "--reason")
parser.add_argument("-d", "--data")
parser.add_argument("-i", "--id")
parser.add_argument("--stack")
parser.add_argument("--resource")
parser.add_argument("--region")
parser.add_argument("--role")
parser.add_argument("-u", "--url")
parser.add_argument("--https-proxy")
parser.add_argument("wait_condition_handle", nargs="?")
args = parser.parse_args()
if args.wait_condition_handle is None and not (args.stack and args.resource):
    fail("--stack and --resource are required for a resource signal", 1)
if args.exit_code is None and args.success is None:
    fail("--exit-code or --success is required", 1)
exit_code = args.exit_code if args.exit_code is not None else int(args.success == "false")
sent = None
if INSTANCE_ID.exists():
    import boto3
    import botocore.exceptions

    if not args.region:
        fail("--region is required to signal CloudFormation", 1)
    endpoint = args.url or os.environ.get("AWS_ENDPOINT_URL")
    client = boto3.client("cloudformation", region_name=args.region, endpoint_url=endpoint)
    unique_id = args.id or INSTANCE_ID.read_text().strip()
    sending = time.time()
    try:
        client.signal_resource(StackName=args.stack, LogicalResourceId=args.resource, UniqueId=unique_id,
                               Status="SUCCESS" if exit_code == 0 else "FAILURE")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        fail(f"SignalResource refused: {exc}", 1)
    sent = {"unique_id": unique_id, "status": "SUCCESS" if exit_code == 0 else "FAILURE", "at": sending}
record(stack=args.stack, resource=args.resource, region=args.region, exit_code=exit_code,
       **({"sent": sent} if sent else {}))
