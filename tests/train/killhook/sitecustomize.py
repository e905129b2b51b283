"""Test-only instrumentation of a training subprocess (this folder is put first on its PYTHONPATH).

Inert unless SESSA_TEST_HOOK holds a JSON object:
  "no_transformers": true   make `import transformers` fail (sessa then skips its optional HF
                            registration: the child starts several seconds sooner)
  "under": DIR              only file events under DIR count
  "record": FILE            at exit, write the events seen, in order, as JSON [[step, ordinal, kind, path], ...]
  "pause": [STEP, ORDINAL]  at that event, before the operation runs: write "marker" and sleep, so the test
  "marker": FILE            can SIGKILL the process at exactly that moment (e.g. inside a checkpoint save)
  "pause_at": [KIND, TEXT]  alternatively: pause at the first KIND event whose path contains TEXT
  "signal_at": [STEP, SIG]  send signal SIG to this process at the optimizer event of STEP (mid-step)
  "rank": R                 apply "pause*" / "signal_at" only in the process whose RANK is R

Events: each AdamW update ("optimizer", ordinal 0, before the parameters change; STEP is the update's
1-based number), then every os.fsync / os.replace / os.rename of a path under DIR (ordinal 1, 2, ... within
that step). Events before a process's first update have step None and are never paused at.
"""

import atexit
import json
import os
import sys
import time

_SPEC = os.environ.get("SESSA_TEST_HOOK")


def _install(spec):
    if spec.get("no_transformers"):
        sys.modules["transformers"] = None  # `import transformers` raises ImportError
    under = os.path.abspath(spec.get("under", "/nonexistent")) + os.sep
    if "rank" in spec and int(os.environ.get("RANK", "0")) != spec["rank"]:
        spec = {k: v for k, v in spec.items() if not k.startswith(("pause", "signal"))}
    pause = tuple(spec["pause"]) if spec.get("pause") else None
    pause_at = tuple(spec["pause_at"]) if spec.get("pause_at") else None
    signal_at = tuple(spec["signal_at"]) if spec.get("signal_at") else None
    events = []
    where = {"step": None, "ordinal": 0}

    def event(kind, path):
        if where["step"] is None:
            return
        where["ordinal"] += 1
        key = (where["step"], where["ordinal"])
        events.append([*key, kind, path])
        if key == pause or (pause_at and kind == pause_at[0] and pause_at[1] in path):
            _stop_here(spec["marker"], kind, path)

    def watch(kind, fn):
        def wrapped(*args, **kwargs):
            src = os.fspath(args[0]) if args else ""
            dst = os.fspath(args[1]) if len(args) > 1 else ""
            if (os.path.abspath(src) + os.sep).startswith(under) or (os.path.abspath(dst) + os.sep).startswith(under):
                event(kind, dst)
            return fn(*args, **kwargs)

        return wrapped

    def fsync(fd, _orig=os.fsync):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if (path + os.sep).startswith(under):
            event("fsync", path)
        return _orig(fd)

    os.replace, os.rename, os.fsync = watch("replace", os.replace), watch("rename", os.rename), fsync

    import torch

    orig_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        first = self.param_groups[0]["params"][0]
        done = int(self.state[first]["step"]) if "step" in self.state.get(first, {}) else 0
        where["step"], where["ordinal"] = done + 1, 0
        events.append([done + 1, 0, "optimizer", ""])
        if (done + 1, 0) == pause:
            _stop_here(spec["marker"], "optimizer", "")
        if signal_at and done + 1 == signal_at[0]:
            os.kill(os.getpid(), signal_at[1])
        return orig_step(self, *args, **kwargs)

    torch.optim.AdamW.step = step
    if spec.get("record"):
        atexit.register(lambda: open(spec["record"], "w").write(json.dumps(events)))


def _stop_here(marker, kind, path):
    with open(marker, "w") as f:
        f.write(json.dumps({"pid": os.getpid(), "kind": kind, "path": path}))
    time.sleep(600)  # the test kills us here


if _SPEC:
    _install(json.loads(_SPEC))
