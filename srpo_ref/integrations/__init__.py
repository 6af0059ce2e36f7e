"""Integrations of the SRPO objective into third-party trainers.

``srpo_ref.integrations.trl``: ``SRPOTrainer`` / ``SRPOConfig`` for TRL (``pip install .[trl]``),
built on TRL's experimental ``SDPOTrainer``. Nothing here is imported by the reference trainer,
so TRL stays an optional dependency.
"""
