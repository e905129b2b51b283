"""A user's own task module, as docs/tasks.md describes it (imported by name in test_task_names.py)."""

from sessa.tasks.mqar import MQAR


def build(**options) -> MQAR:
    """A small MQAR: the factory a user names as `mytasks:build`."""
    return MQAR(**{"n_train": 16, "n_validation": 8, "n_test": 8, "seq_len": 32, "num_pairs": 2, **options})
