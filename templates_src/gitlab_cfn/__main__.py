import sys

from gitlab_cfn.cli import main

sys.exit(main())
