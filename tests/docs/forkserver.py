"""Run Python scripts, each in its own forked process, after importing torch once.

On the 2-core CI machine `import torch` costs 2-5 s of a docs example's few seconds; forking a process that
already holds it makes each example a fresh process with fresh globals for a fraction of that. Neither
`sessa` nor `transformers` is imported here: `import sessa` registers the Auto classes with transformers
(at once, or when transformers is first imported), and an example must meet that in the order a user's
fresh interpreter does.

Protocol: one JSON request per stdin line, {"script", "cwd", "stdout", "stderr", "timeout"}; one JSON reply
per stdout line, {"rc": exit status, or -9 after a timeout}.
"""

import json
import os
import runpy
import signal
import sys
import time
import traceback

import torch  # noqa: F401  (imported for the children)


def _child(req: dict) -> None:
    os.chdir(req["cwd"])
    sys.path[0] = req["cwd"]  # as `python script.py` does: the script's folder first
    sys.argv = [req["script"]]
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    code = 0
    try:
        runpy.run_path(req["script"], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.05)


def main() -> None:
    reply = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        reply.write(json.dumps({"rc": _wait(pid, float(req["timeout"]))}) + "\n")
        reply.flush()


if __name__ == "__main__":
    main()
