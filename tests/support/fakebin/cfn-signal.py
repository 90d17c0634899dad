"""cfn-signal with the options of AWS's helper scripts (aws-cfn-bootstrap): refuses others, records the signal."""
import argparse

from fakelib import fail, record

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
record(stack=args.stack, resource=args.resource, region=args.region,
       exit_code=args.exit_code if args.exit_code is not None else int(args.success == "false"))
