"""The math-verify worker process behind ``srpo_ref.rewards.math_answers.math_reward``.

``python -m srpo_ref.rewards.math_worker`` reads one JSON request per line on stdin (``{"gold": ...,
"answer": ...}``) and writes one line per request: ``1`` or ``0``. It runs math-verify on its
main thread with math-verify's own timeouts off; the *parent* enforces the time limit by killing
this process (sympy can hold the GIL for minutes, so no thread-based timeout can stop it) and
starting a fresh one.
"""

import json
import logging
import resource
import sys


def main() -> None:
    memory = int(sys.argv[1]) if len(sys.argv) > 1 else 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            gold = parse(req["gold"], parsing_timeout=None)
            answer = parse(req["answer"], parsing_timeout=None)
            ok = bool(gold) and bool(answer) and bool(verify(gold, answer, timeout_seconds=None))
        except BaseException:  # noqa: BLE001  a parse failure or MemoryError scores 0
            ok = False
        sys.stdout.write("1\n" if ok else "0\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
