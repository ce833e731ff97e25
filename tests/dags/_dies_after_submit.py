"""
The submit whose first try dies right after the vendor accepted its job(s) and the submit recorded them,
before the XCom is pushed: how the suite's DAG files lose a worker mid-submit. The retry must find the
references the first try stored and submit nothing more.

Not a DAG file (the folder's ``.airflowignore`` keeps Airflow from parsing it). The DAG files import it as
``_dies_after_submit``, Airflow having put the folder on ``sys.path`` (a bundle's root is, wherever a DAG
file is parsed: DAG processor, task runner, ``dag.test()``'s bundle sync, ``airflow dags`` commands), or
as ``dags._dies_after_submit`` when the suite imports a DAG file itself (pytest puts ``tests/`` there).
"""

from __future__ import annotations

import os
import signal
from typing import Any


def _raise() -> None:
    raise RuntimeError("worker lost after submitting")


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# How try 1 dies: with an error the task fails on (under ``dag.test()``, which runs tasks in its own
# process), or by SIGKILL, as the OOM killer or a lost node ends a worker (in a real deployment).
DEATHS = {"raise": _raise, "sigkill": _sigkill}
NAMES = {"raise": "DiesAfterSubmit", "sigkill": "KilledAfterSubmit"}


class DiesAfterSubmit:
    """A submit operator's mixin: try 1 dies (``how``, a key of ``DEATHS``) once the submit returned."""

    how = "raise"

    def execute(self, context: Any) -> Any:
        reference = super().execute(context)
        if context["ti"].try_number == 1:
            DEATHS[self.how]()
        return reference


def dies_after_submit(operator: type, how: str = "raise") -> type:
    """``operator`` whose first try dies ``how`` right after its submit: ``MindeeSubmitOperatorDiesAfterSubmit``."""
    return type(f"{operator.__name__}{NAMES[how]}", (DiesAfterSubmit, operator), {"how": how})


class KilledMidBatch:
    """
    A batch submit's mixin: try 1's whole process group is SIGKILLed as it starts sending document
    ``after + 1``, once the vendor accepted ``after`` documents: a worker lost mid-batch. Only in a process
    run with ``DOCJOBS_KILL_MID_BATCH=1`` (one started in a session of its own, never the test runner's).
    """

    after = 2

    def execute(self, context: Any) -> Any:
        self.sent = 0
        self.first_try = context["ti"].try_number == 1 and os.environ.get("DOCJOBS_KILL_MID_BATCH") == "1"
        return super().execute(context)  # type: ignore[misc]

    def submit_one(self, hook: Any, item: Any) -> Any:
        if self.first_try and self.sent == self.after:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        self.sent += 1
        return super().submit_one(hook, item)  # type: ignore[misc]


def killed_mid_batch(operator: type, after: int) -> type:
    """``operator`` whose first try is SIGKILLed, process group and all, after ``after`` accepted submits."""
    return type(f"{operator.__name__}KilledMidBatch", (KilledMidBatch, operator), {"after": after})
