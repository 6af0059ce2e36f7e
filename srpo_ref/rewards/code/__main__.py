"""The judge process: ``python -m srpo_ref.rewards.code`` (started by ``sandbox.run_job``; see
``judge``). A module of its own so that ``judge`` is imported once, as itself."""

from srpo_ref.rewards.code.judge import main

main()
