"""Send a workflow script's output to its rule's log file."""

import sys


def to_log(snakemake):
    if snakemake.log:
        f = open(snakemake.log[0], "w", buffering=1)
        sys.stdout = sys.stderr = f
