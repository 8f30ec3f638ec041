"""The warm local Spark driver: one Python process + one JVM that runs job runs one after the other.

Run as a script (``python -P spark_host.py``), never imported by the runtime: it imports only the standard
library and pyspark, so the job's own ``dropzone`` and ``spark_app`` modules come from the run's ``--py-files``
zip exactly as under ``spark-submit``. The runtime (``dropzone.local.emr.SparkHost``) starts it with
``PYSPARK_SUBMIT_ARGS`` holding the same driver options a per-run ``spark-submit`` gets; it creates the
SparkSession, runs a tiny warm-up query (the JVM loads and compiles Spark's code while the runtime deploys), says
it is ready, then reads one JSON request per line on stdin::

    {"id": ..., "entry": "/local/main.py", "arguments": [...], "py_files": ["/local/app.zip"], "conf": {...}}

and runs the entry point as ``__main__`` with ``sys.argv = [entry, *arguments]``, the py-files first on
``sys.path`` (and shipped to Python workers), in a new SparkSession of the shared SparkContext (its own SQL
conf, temporary views and UDFs) that the job's ``SparkSession.builder.getOrCreate()`` returns. The job's
``spark.stop()`` is a no-op here; after the run the host cancels what still runs, drops cached data and forgets
the modules the run imported from its own files, so the next run starts fresh. Everything the run prints (and
the JVM's log) goes to stdout; the host ends each run with one line ``MARK {"id": ..., "code": ...}`` — code 0
for success, the ``SystemExit`` code, 1 for an exception (its traceback printed as Python would) — or
``{"refused": reason}`` when the run needs a driver setting the warm driver does not have, or a py-file of the same
name as one already shipped to the Python workers but other content (the runtime then runs it with its own
``spark-submit``). At the end of stdin the host stops Spark and waits for the JVM to exit.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MARK = "\x1e[dropzone-spark-host]"
STARTED = time.monotonic()


def _reply(**fields: Any) -> None:
    sys.stderr.flush()
    sys.stdout.write("\n" + MARK + " " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def _exit_code(error: SystemExit) -> int:
    """What the interpreter would exit with for ``error`` (a message is printed to stderr, code 1)."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


class Host:
    def __init__(self) -> None:
        from pyspark.sql import SparkSession

        self.base = SparkSession.builder.getOrCreate()  # master, driver options: PYSPARK_SUBMIT_ARGS
        self.sc = self.base.sparkContext
        self._static = dict(self.sc.getConf().getAll())
        self._shipped: dict[str, str] = {}  # py-file name → digest of what the Python workers have

    def warm_up(self) -> None:
        """A tiny query of the kinds every run makes (CSV read, aggregate, Parquet write and read): the JVM loads
        and compiles that code now, while the runtime deploys and ingests, instead of during the first job run.
        Kept small on purpose: on 2 cores a bigger one (window, join, partitioned write) cost ~14 CPU-s more
        than the JVM's own start and saved the first run less than that. Nothing of it stays."""
        from pyspark.sql import functions as F

        spark = self.base.newSession()
        scratch = tempfile.mkdtemp(prefix="spark-host-warm-up-", dir=os.getcwd())
        try:
            source = os.path.join(scratch, "in.csv")
            with open(source, "w", encoding="utf-8") as out:
                out.write("id,key,amount\n")
                out.writelines(f"{i},k{i % 3},{i * 1.5}\n" for i in range(20))
            rows = spark.read.csv(source, header=True, schema="id long, key string, amount double")
            totals = rows.groupBy("key").agg(F.count("*").alias("n"), F.sum("amount").alias("total"))
            target = os.path.join(scratch, "out")
            totals.coalesce(1).write.parquet(target)
            spark.read.parquet(target).collect()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def stop(self) -> None:
        """Stop Spark and wait for the JVM, so it ends with the host (and its CPU time is the host's)."""
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        self.sc.stop()
        if gateway is not None:
            gateway.shutdown()
            proc = getattr(gateway, "proc", None)
            if proc is not None:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait()

    def _refusal(self, conf: dict[str, str], py_files: list[str]) -> str | None:
        for key, value in conf.items():
            if not self.base.conf.isModifiable(key) and self._static.get(key) != value:
                return f"{key}={value} is a driver setting the warm driver was started without"
        for path in py_files:
            name = os.path.basename(path)
            if name in self._shipped and self._shipped[name] != _digest(path):
                return f"its Python workers already have a different {name}"
        return None

    @contextmanager
    def _patched(self) -> Iterator[None]:
        """The job's spark.stop() keeps the shared driver; the host cleans up after the run instead."""
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        session_stop, context_stop = SparkSession.stop, SparkContext.stop
        SparkSession.stop = lambda self: None  # type: ignore[method-assign]
        SparkContext.stop = lambda self: None  # type: ignore[method-assign]
        try:
            yield
        finally:
            SparkSession.stop, SparkContext.stop = session_stop, context_stop  # type: ignore[method-assign]

    def _session(self, conf: dict[str, str]) -> Any:
        from pyspark.sql import SparkSession

        session = self.base.newSession()
        for key, value in conf.items():
            if self.base.conf.isModifiable(key):
                session.conf.set(key, value)
        jvm_class = SparkSession._get_j_spark_session_class(self.sc._jvm)
        jvm_class.setDefaultSession(session._jsparkSession)
        jvm_class.setActiveSession(session._jsparkSession)
        SparkSession._instantiatedSession = session
        SparkSession._activeSession = session
        return session

    def run(self, request: dict[str, Any]) -> None:
        entry, arguments = str(request["entry"]), [str(a) for a in request.get("arguments", [])]
        py_files = [str(p) for p in request.get("py_files", [])]
        conf = {str(k): str(v) for k, v in (request.get("conf") or {}).items()}
        try:
            refused = self._refusal(conf, py_files)
            if refused:
                _reply(id=request.get("id"), refused=refused)
                return
            for path in py_files:  # the Python workers' path, as --py-files gives it (Spark keeps one per name)
                if os.path.basename(path) not in self._shipped:
                    self.sc.addPyFile(path)
                    self._shipped[os.path.basename(path)] = _digest(path)
        except Exception:  # a py-file that cannot be shipped fails this run, like spark-submit would
            traceback.print_exc()
            _reply(id=request.get("id"), code=1)
            return
        own = [*py_files, os.path.dirname(os.path.abspath(entry))]
        modules = set(sys.modules)
        saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
        sys.argv = [entry, *arguments]
        sys.path[:0] = [own[-1], *py_files]  # python entry.py puts its directory first; then --py-files
        code = 0
        try:
            with self._patched():
                self._session(conf)
                runpy.run_path(entry, run_name="__main__")
        except SystemExit as e:
            code = _exit_code(e)
        except BaseException:  # any error fails this run only, as the interpreter would
            traceback.print_exc()
            code = 1
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
            os.chdir(saved_cwd)
            self._clean(modules, own)
        _reply(id=request.get("id"), code=code)

    def _clean(self, before: set[str], own: list[str]) -> None:
        from pyspark.sql import SparkSession

        self.sc.cancelAllJobs()
        self.base.catalog.clearCache()
        for rdd in list(self.sc._jsc.getPersistentRDDs().values()):
            rdd.unpersist(False)
        jvm_class = SparkSession._get_j_spark_session_class(self.sc._jvm)
        jvm_class.setDefaultSession(self.base._jsparkSession)
        jvm_class.setActiveSession(self.base._jsparkSession)
        SparkSession._instantiatedSession = self.base
        SparkSession._activeSession = self.base
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            location = getattr(module, "__file__", None) or ""
            if any(location == path or location.startswith(path + os.sep) for path in own):
                del sys.modules[name]  # the next run imports its own copy (a fresh zip, fresh module state)


def _digest(path: str) -> str:
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def main() -> int:
    try:
        host = Host()
    except BaseException:  # said on stdout; the runtime falls back to spark-submit per run
        traceback.print_exc()
        _reply(ready=False)
        return 1
    try:
        host.warm_up()
    except Exception:  # a warm-up that fails costs the first run its warm-up, nothing else
        traceback.print_exc()
    _reply(ready=True, spark=host.sc.version, pid=os.getpid(), seconds=round(time.monotonic() - STARTED, 1))
    for line in sys.stdin:
        if line.strip():
            host.run(json.loads(line))
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
