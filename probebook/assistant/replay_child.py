"""The replay's child process (`probebook.assistant.replay`): the standard library only, so it runs under the
service's own interpreter. Run as a script, never imported by a service: ``python -I replay_child.py TREE
MODULE QUALNAME [PATH ...]`` reads the captured calls as JSON on stdin, runs each with `MODULE`'s
`QUALNAME` imported from the copy at `TREE`, and prints ``{evidence_id: answer}`` as one JSON line.

Its network is off (every socket connection refused before it is made: a replayed call never reaches a
live service) and its clocks are set back to each call's time. Imported (the doctests walk the package), it
patches nothing.
"""

import ast
import importlib
import inspect
import io
import json
import os
import queue
import re
import socket
import sqlite3
import sys
import threading
import time


class NotRebuilt(BaseException):  # not an Exception: a replayed `except Exception` never swallows it
    pass

def _no_network(*args, **kwargs):
    raise OSError("the replay has no network: a replayed call may not reach another service")

TOUCHED, STAND_INS = [], []  # per call: the tripwires it touched, the stand-ins it ran with

# a call runs at the time production made it: an entry's expiry, a token's age read as they were then
_REAL = {n: getattr(time, n) for n in ("time", "time_ns", "monotonic", "monotonic_ns")}
AGE = [0.0]

def _stop(why):
    """A tripwire fired: recorded (a call that swallows the stop is still not answered as its own), then raised."""
    TOUCHED.append(why)
    raise NotRebuilt(why)

def _trip(self, *args, **kwargs):
    _stop(object.__getattribute__(self, "_why"))

class Missing:
    """Stands where a captured value could not be made again: a call that uses it in any way (reads an
    attribute, calls it, compares it, iterates it, prints it) stops, and is reported as not rebuilt."""
    __slots__ = ("_why",)

    def __init__(self, why):
        object.__setattr__(self, "_why", why)

    __getattribute__ = _trip  # also `__class__`, which isinstance reads when the type does not match

for _name in ("call len iter next reversed bool eq ne lt le gt ge hash getitem setitem delitem contains enter exit "
              "aenter aexit aiter anext await repr str format bytes fspath int float complex index round neg pos "
              "abs invert add radd sub rsub mul rmul matmul truediv rtruediv floordiv rfloordiv mod rmod divmod "
              "pow rpow and rand or ror xor rxor lshift rlshift rshift rrshift setattr delattr").split():
    setattr(Missing, f"__{_name}__", _trip)

def _key(t):
    return repr(t.get("value")) if "value" in t else "..."

class PartialDict(dict):
    """A dict cut at the capture's limits: a key captured answers its value; a key not captured, its size,
    its iteration, a comparison stop the call (the cut entries may hold the answer)."""
    __slots__ = ("_where",)

    def __init__(self, where, items):
        dict.__init__(self, items)
        self._where = where

    def _cut(self, key=None):
        _stop(f"{self._where}: a dict cut at the capture's limits" + (
            f" (key {key!r} was not among the entries captured)" if key is not None else ""))

    def __getitem__(self, key):
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else self._cut(key)

    def get(self, key, default=None):
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else self._cut(key)

    def __contains__(self, key):
        return True if dict.__contains__(self, key) else self._cut(key)

    def setdefault(self, key, default=None):
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else self._cut(key)

    def pop(self, key, *default):
        return dict.pop(self, key) if dict.__contains__(self, key) else self._cut(key)

    def __delitem__(self, key):
        return dict.__delitem__(self, key) if dict.__contains__(self, key) else self._cut(key)

for _name in ("__iter__", "__len__", "__reversed__", "__eq__", "__ne__", "__repr__", "__or__", "__ror__",
              "keys", "values", "items", "copy", "popitem", "__reduce__", "__reduce_ex__"):
    setattr(PartialDict, _name, lambda self, *a, **k: self._cut())

# a lock is taken and given back within the call: a fresh one stands for production's (said in the answer);
# a file production only writes to is a file in memory (said too)
_FRESH = {"_thread.lock": threading.Lock, "_thread.RLock": threading.RLock}

class _Sink:
    """A file in memory standing for one production only wrote to: it takes writes; what only the real
    file has (its descriptor, its buffer) stops the call."""
    def _lacks(self, what):
        _stop(f"{self._where}: a file production wrote to, stood in by one in memory, which has no {what}")

    def fileno(self):
        self._lacks("file descriptor")

    def detach(self):
        self._lacks("buffer to detach")

    @property
    def buffer(self):
        self._lacks("buffer")

class _TextSink(_Sink, io.StringIO):
    pass

class _BytesSink(_Sink, io.BytesIO):
    pass

# a condition's lock is often another object's too (queue.Queue's three conditions share its mutex); a capture
# holds no identities, so a condition made again would notify on a lock no one holds
_SHARED = {"threading.Condition"}

def _sink(t, where):
    """For a file production only wrote to (a log, a journal): a file in memory that takes the call's
    writes, so they never reach production's file; None for any other value."""
    mode = str(((t.get("fields") or {}).get("mode") or {}).get("value", ""))
    if t.get("type") == "_io.BufferedWriter":
        sink = _BytesSink()
    elif t.get("type") == "_io.TextIOWrapper" and mode and set(mode) <= set("waxt"):
        sink = _TextSink()
    else:
        return None
    sink._where, sink.mode, sink.name = where, mode or "wb", where
    return sink

# production's SQLite files the captures name -> a fresh copy of each (made by the parent, `replay._databases`)
DATABASES = {}
_NEAREST = []  # while an object's fields are made: the database its own fields name (`_names_database`)
_QUEUES = {"queue.Queue", "queue.LifoQueue", "queue.PriorityQueue"}

def _names_database(fields):
    """The database an object's own fields name: a copied one's path, False for a database file name that
    was not copied, None when none of its fields names one."""
    texts = [v.get("value") for v in fields.values() if v.get("type") == "str" and isinstance(v.get("value"), str)]
    copied = [x for x in texts if x in DATABASES]
    if copied:
        return copied[0]
    # the suffixes of replay._DB_SUFFIXES (this script imports nothing of the package)
    return False if any(x.endswith((".db", ".sqlite", ".sqlite3")) for x in texts) else None

def _connection(where):
    """A connection to a fresh copy of the database the nearest object around it names (a pool's `path`),
    or of the only one the captures name; the capture of a connection does not say which file it has open."""
    named = next((db for db in reversed(_NEAREST) if db is not None), None)
    if named is False:  # the object around it names a database that was not copied: never another one
        raise NotRebuilt("a sqlite3.Connection: the object around it names a database file not copied for the "
                         "replay (a relative path, or not on this machine)")
    if named is None and len(DATABASES) == 1:  # no object around it names one: the only one the captures name
        named = next(iter(DATABASES))
    if named is None:
        raise NotRebuilt("a sqlite3.Connection: no object around it names its database file" + (
            f" (the captures name {len(DATABASES)})" if DATABASES else ""))
    STAND_INS.append(f"{where}: a connection to a fresh copy of {named}")
    return sqlite3.connect(DATABASES[named], check_same_thread=False, isolation_level=None)

def _queue(t, where):
    """A fresh queue of the stdlib's holding the items captured in it, in order: its conditions share its
    own mutex, as production's did."""
    fields = t.get("fields") or {}
    if "queue" not in fields:
        raise NotRebuilt(f"a {t['type']} whose items were not captured (the capture's limits)")
    held = fields["queue"]
    if held.get("truncated") or "not_captured" in held:
        raise NotRebuilt(f"a {t['type']} whose items were cut at the capture's limits")
    q = getattr(queue, t["type"].rpartition(".")[2])((fields.get("maxsize") or {}).get("value") or 0)
    q.queue.extend(soft(e, f"{where}.queue[{i}]") for i, e in enumerate(held.get("elements", [])))
    q.unfinished_tasks = (fields.get("unfinished_tasks") or {}).get("value") or 0
    STAND_INS.append(f"{where}: a fresh {t['type']} holding its {len(q.queue)} captured items")
    return q

def _by_name(kind, dotted):
    """A module-level function or a class, by the name its capture gives: the same object, imported here
    from the same code. A lambda or a function made inside another has no name to import it by."""
    if "<locals>" in dotted:
        raise NotRebuilt(f"a {kind} made inside another function ({dotted}): its code is not in the capture")
    if "<" in dotted or dotted.split(".")[0] == "__main__":
        raise NotRebuilt(f"a {kind} with no name to import it by ({dotted})")
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]) if cut else "builtins")
            for part in parts[cut:]:
                found = getattr(found, part)
        except Exception:
            continue
        return found
    raise NotRebuilt(f"a {kind} ({dotted}) not importable here")

def _assigned(cls):
    """The attributes the class's own code sets on its objects (`self.x = ...`); None when unreadable."""
    names = set()
    try:
        for klass in cls.__mro__[:-1]:
            for node in ast.walk(ast.parse(inspect.getsource(klass).lstrip())):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                        isinstance(node.value, ast.Name) and node.value.id == "self":
                    names.add(node.attr)
    except Exception:
        return None
    return names

def rebuild(t, where):
    kind = t.get("type")
    if "not_captured" in t:
        raise NotRebuilt(f"a {kind} that was {t['not_captured']}")
    if kind in _FRESH and not t.get("fields"):
        STAND_INS.append(f"{where}: a fresh {kind}")
        return _FRESH[kind]()
    sink = _sink(t, where)
    if sink is not None:
        STAND_INS.append(f"{where}: a file open for writing, its writes kept in memory")
        return sink
    if kind in _QUEUES and "fields" in t:
        return _queue(t, where)
    if kind == "sqlite3.Connection":
        return _connection(where)
    if kind in ("function", "type") and "summary" in t:
        return _by_name(kind, t["summary"])
    if kind in _SHARED:  # made again, it would wait on a lock of its own: production's may be shared
        raise NotRebuilt(f"a {kind}: it waits on a lock it may share with others (a queue's mutex), which a "
                         f"capture cannot show")
    if kind == "dict" and t.get("truncated"):  # the entries captured answer; what needs the others stops
        return PartialDict(where, ((rebuild(k, where), soft(v, f"{where}[{_key(k)}]")) for k, v in t.get("entries", [])))
    if t.get("truncated") and "fields" not in t:
        raise NotRebuilt(f"a {kind} cut at the capture's limits")
    if kind == "str" and t.get("value") in DATABASES:  # a database's path: its copy's
        STAND_INS.append(f"{where}: the path of a fresh copy of {t['value']}")
        return DATABASES[t["value"]]
    if kind in ("int", "float", "str", "bool", "NoneType"):
        return t.get("value")
    if kind in ("set", "frozenset"):  # members are hashed: each must be whole
        return {"set": set, "frozenset": frozenset}[kind](rebuild(e, where) for e in t.get("elements", []))
    if kind in ("list", "tuple"):  # an item that cannot be made stands as a tripwire in its place
        return {"list": list, "tuple": tuple}[kind](soft(e, f"{where}[{i}]") for i, e in enumerate(t.get("elements", [])))
    if kind == "dict":  # keys are hashed: each must be whole; a value that cannot be made is a tripwire
        return {rebuild(k, where): soft(v, f"{where}[{_key(k)}]") for k, v in t.get("entries", [])}
    if "fields" in t:  # an object of the service's classes: made without running its __init__
        mod, _, name = kind.rpartition(".")
        try:
            cls = importlib.import_module(mod) if mod else None
            for part in name.split("."):
                cls = getattr(cls, part)
        except Exception:
            raise NotRebuilt(f"a {kind}: its class is not importable here")
        absent = set()
        if t.get("truncated"):  # the capture stopped before its last fields: those its class sets stand in
            absent = _assigned(cls)
            if absent is None:
                raise NotRebuilt(f"a {kind} cut at the capture's limits (its class's source is not readable)")
        obj = cls.__new__(cls)
        _NEAREST.append(_names_database(t["fields"]))
        try:
            for k, v in t["fields"].items():
                object.__setattr__(obj, k, soft(v, f"{where}.{k}"))
            for k in sorted(absent - set(t["fields"])):
                object.__setattr__(obj, k, Missing(f"{where}.{k}: not captured (the capture's limits)"))
        except (AttributeError, TypeError) as exc:
            raise NotRebuilt(f"a {kind}: its fields cannot be set ({exc})")
        finally:
            _NEAREST.pop()
        return obj
    raise NotRebuilt(f"a {kind} (no way to make one again from its capture)")

class Quiet:
    """Stands for a part of a logger that could not be made again (a function it made at start-up): calling
    it, or anything read from it, does nothing; a log line has no bearing on what the call answers."""
    __slots__ = ()

    def __call__(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return self

_LOGGER = re.compile(r"(?:^|\.)_?log(?:ger)?(?=\.|$)")  # a path through an attribute named log, _log, logger

def soft(t, where):
    """The value, or a `Missing` that says why not: a call that never uses it is replayed all the same. A
    logger's part that cannot be made stands as a `Quiet` instead, said among the stand-ins."""
    try:
        return rebuild(t, where)
    except NotRebuilt as exc:
        if _LOGGER.search(where):
            STAND_INS.append(f"{where}: part of a logger, not made again ({exc}): its calls do nothing")
            return Quiet()
        return Missing(f"{where}: {exc}")
    except (Exception, SystemExit) as exc:  # a stand-in's own failure (a connect, an import): this value only
        return Missing(f"{where}: could not be made again ({type(exc).__name__}: {str(exc)[:120]})")

def answer(value):
    text = repr(value)
    return {"ok": True, "type": type(value).__name__, "value": text if len(text) <= 200 else text[:200] + "..."}



NOTICED_MS = 20.0  # as replay.NOTICED_MS: a time at least this long may decide whether a fix holds

def _call(target, qualname, call):
    """One replay of `call`: its answer (or why it was not rebuilt), and the milliseconds the call itself
    took (its answer's repr aside)."""
    del TOUCHED[:], STAND_INS[:]
    AGE[0] = max(0.0, _REAL["time"]() - call["ts"]) if call.get("ts") else 0.0
    owner, _, fname = qualname.rpartition(".")
    try:
        args = {k: soft(v, k) for k, v in call["arguments"].items()}
        if owner and "self" in args:  # a method: the captured self is its first argument
            if type(args["self"]) is Missing:
                raise NotRebuilt(object.__getattribute__(args["self"], "_why"))
            fn = getattr(type(args["self"]), fname)
        else:
            fn = target
            for part in qualname.split("."):
                fn = getattr(fn, part)
    except NotRebuilt as exc:
        return {"not_rebuilt": str(exc)}, None
    started = time.perf_counter()  # not set back: a call's own duration is measured, not replayed
    try:
        value = fn(**args)
    except NotRebuilt as exc:
        return {"not_rebuilt": str(exc)}, None
    except BaseException as exc:
        ms = round((time.perf_counter() - started) * 1000, 3)
        return {"ok": False, "raised": type(exc).__name__, "message": str(exc)[:200]}, ms
    ms = round((time.perf_counter() - started) * 1000, 3)
    return answer(value), ms

def main(argv):
    root, module, qualname = argv[1], argv[2], argv[3]
    sys.path[:0] = [root, *argv[4:]]
    DATABASES.update(json.loads(os.environ.get("PROBEBOOK_REPLAY_DBS") or "{}"))
    socket.socket.connect = socket.socket.connect_ex = _no_network
    socket.create_connection = _no_network
    time.time = lambda: _REAL["time"]() - AGE[0]
    time.time_ns = lambda: _REAL["time_ns"]() - int(AGE[0] * 1e9)
    time.monotonic = lambda: _REAL["monotonic"]() - AGE[0]
    time.monotonic_ns = lambda: _REAL["monotonic_ns"]() - int(AGE[0] * 1e9)
    target = importlib.import_module(module)
    out = {}
    for call in json.load(sys.stdin):
        got, ms = _call(target, qualname, call)
        stand_ins = sorted(set(STAND_INS))
        if TOUCHED and "not_rebuilt" not in got:  # the call caught the stop itself: what it answered is not its own
            got = {"not_rebuilt": TOUCHED[0]}
        if "not_rebuilt" not in got:
            # a time that may decide a row is taken thrice, the fastest kept: one pause of a busy machine
            # must not make a healthy call look slow, nor a slow one fixed
            for _ in range(2 if ms is not None and ms >= NOTICED_MS else 0):
                again, t = _call(target, qualname, call)
                if "not_rebuilt" not in again and not TOUCHED and t is not None:
                    ms = min(ms, t)
            got["ms"] = ms
            if stand_ins:
                got["stand_ins"] = stand_ins
        out[call["id"]] = got
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
