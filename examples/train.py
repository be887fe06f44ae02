"""`adautomix` as a script, for `ray submit CLUSTER.yaml examples/train.py -- train ...`.

`ray submit` uploads one file to the head node and runs it with Python there; this file hands its
arguments to the `adautomix` command line (installed on the nodes by the cluster's setup
commands). Pass `--address auto` so that training joins the running cluster instead of starting
a new one on the head.
"""
import sys

from adautomix.cli import main

if __name__ == "__main__":
    sys.exit(main())
