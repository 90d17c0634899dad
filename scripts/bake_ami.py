#!/usr/bin/env python3
"""Bake the GitLab AMI: the same as `gitlab-cfn bake-ami` (see gitlab_cfn/bake.py).

    .venv/bin/python scripts/bake_ami.py --gitlab-version 18.5.1 --region us-east-1 \
        --copy-to eu-west-1,ap-southeast-2
"""

import sys

from gitlab_cfn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bake-ami", *sys.argv[1:]]))
