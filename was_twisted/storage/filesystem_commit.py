"""Group commit: concurrent writes share one flush to stable storage instead of paying one each.

A durable replace is the classic four steps, done in two *rounds* of this
committer so that concurrent writers share each flush::

    write tmp          (no fsync yet)
    sync(files=[tmp])  round 1: the bytes and the inode are on disk; no name points at them yet
    rename(tmp, name)
    sync(dirs=[dir])   round 2: the name is on disk; only now is the write answered

Why two rounds and not one (the crash argument):

* The bytes must be durable *before* the rename can be: a power cut after
  the rename reached the journal but before the data did would leave a
  visible name on an empty or partial file (ext4's delayed allocation does
  exactly that for a new name; a periodic journal commit may persist the
  rename at any moment after ``rename()``).  So round 1 ends before the
  rename, and a crash at any point leaves the old file (or nothing) or the
  new one, whole.
* The rename must be durable before the write is answered: a ``rename``
  over an existing name creates no name but still rewrites the directory
  entry (it now points at the new inode, and the temp name goes), so a
  power cut before the directory is flushed would bring back the *old*
  bytes after a 2xx.  Hence every rename is followed by round 2, an
  overwrite included; what is saved is the ``.meta`` rename (and its round
  1) when the type did not change, and a second flush of a directory
  another writer in the batch already flushes.

A *batch* is the set of writers waiting when the committer becomes free:
the first writer to find no flush running becomes the leader, closes the
batch and flushes it on its own thread; writers arriving meanwhile join the
next batch, which the next leader flushes the moment the current one ends.
So a batch closes at most one flush (a couple of milliseconds) after its
first writer joined, holds at most as many writers as there are storage
threads (``WAS_THREADS``), and a lone writer (concurrency 1) waits for no
one.  Every writer returns only after the flush of its batch *completed*;
if it failed, every writer in the batch raises it (nothing is answered 2xx
on a failed flush).

The flush, chosen by measuring on ext4 (bench/README.rst): each writer
calls ``fsync`` on its own temp files, in parallel with the others (the
kernel merges concurrent calls into one journal commit; one thread doing a
batch's files in turn waits for a commit each), and the batch's directories
get one ``fsync`` each from its leader, however many writers renamed into
them.  One ``syncfs(2)`` per batch was as fast on a quiet disk but 3.7x
slower on a shared one: it writes back every other process's dirty data too.

A writer that is alone (concurrency 1: no other thread is in ``sync``) and
has more than one thing to flush in a round -- a new resource's bytes and
its ``.meta``; a metadata record's temp file and the directory of the write
before it -- runs those ``fsync`` calls side by side on a couple of helper
threads (handed each call by a pair of locks: no executor, future or queue)
instead of one after another: the kernel merges concurrent calls into
one journal commit, so a round costs one commit's wait instead of two.  The
same calls complete before ``sync`` returns, so nothing above changes; under
concurrency the other writers' calls already overlap, and no helper is used.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable, Sequence

#: The flush a batch runs: (file descriptors, directory paths) -> None; raises ``OSError`` on failure.
Flush = Callable[[Sequence[int], Sequence[str]], None]


def _open_dir(path: str) -> int | None:
    """A descriptor on ``path``, or ``None`` when it is gone (a space deleted meanwhile: nothing to keep)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None


def fsync_each(files: Sequence[int], dirs: Sequence[str]) -> None:
    """The portable flush: ``fsync`` every file, then every distinct directory once."""
    for fd in files:
        os.fsync(fd)
    for path in dict.fromkeys(dirs):
        dir_fd = _open_dir(path)
        if dir_fd is None:
            continue
        try:
            os.fsync(dir_fd)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EBADF):  # this file system cannot sync directories
                raise
        finally:
            os.close(dir_fd)


def default_flush() -> Flush:
    """``fsync`` of each file (by its writer, in parallel) and each distinct directory (once per batch)."""
    return fsync_each


def no_flush(files: Sequence[int], dirs: Sequence[str]) -> None:
    """``WAS_FSYNC=off``: the operator traded durability for speed; the page cache decides."""


class _Helper:
    """A thread that runs one call at a time for a lone writer, handed over by two locks.

    Cheaper than an executor (no future, queue or condition per call): the
    writer sets ``call`` and releases ``_go``; the helper runs it, keeps any
    error and releases ``_done``, which the writer acquires.
    """

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._call: Callable[[], None] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="was-fsync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._go.acquire()
            call = self._call
            if call is None:
                return
            try:
                call()
            except BaseException as e:
                self.error = e
            self._done.release()

    def start(self, call: Callable[[], None]) -> None:
        self.error = None
        self._call = call
        self._go.release()

    def wait(self) -> BaseException | None:
        self._done.acquire()
        self._call = None
        return self.error

    def stop(self) -> None:
        self._call = None
        self._go.release()
        self._thread.join()


class _Batch:
    __slots__ = ("files", "dirs", "writers", "done", "error")

    def __init__(self) -> None:
        self.writers = 0
        self.files: list[int] = []
        self.dirs: list[str] = []
        self.done = False
        self.error: BaseException | None = None


class GroupCommit:
    """Collects the files and directories writers need durable and flushes them in shared batches.

    ``flush`` is what a batch runs (``default_flush()``, or ``no_flush`` for
    ``WAS_FSYNC=off``; tests pass their own, which then gets the files too).  ``batches`` and ``synced`` count
    flushes and the writers they answered (for tests and benchmarks).
    """

    def __init__(self, flush: Flush | None = None) -> None:
        self.flush: Flush = default_flush() if flush is None else flush
        self.durable = self.flush is not no_flush
        self._cond = threading.Condition(threading.Lock())
        self._open = _Batch()
        self._flushing = False
        self.batches = 0
        self.synced = 0
        #: Threads inside ``sync`` now; one alone flushes a round's files side by side.
        self._syncing = 0
        self._count = threading.Lock()
        #: Started on the first lone round that needs them; only the one lone writer uses them.
        self._helpers: list[_Helper] = []
        self._helpers_lock = threading.Lock()
        #: Rounds a lone writer flushed side by side (for tests and benchmarks).
        self.side_by_side = 0

    def sync(self, files: Sequence[int] = (), dirs: Sequence[str] = ()) -> None:
        """Return once ``files`` (open descriptors, kept open by the caller) and ``dirs`` are on disk.

        Everything written or renamed before this call is covered: the flush
        that answers it starts after it joined the batch.
        """
        if not self.durable or not (files or dirs):
            return
        with self._count:
            self._syncing += 1
            alone = self._syncing == 1
        try:
            self._sync(files, dirs, alone)
        finally:
            with self._count:
                self._syncing -= 1

    def _sync(self, files: Sequence[int], dirs: Sequence[str], alone: bool) -> None:
        if files and self.flush is fsync_each:
            # Parallel fsyncs of distinct files already share the journal commit; one thread
            # doing them in turn would wait for each.  Only the directories are batched.
            if alone and len(files) + bool(dirs) > 1:
                calls: list[Callable[[], None]] = [functools.partial(os.fsync, fd) for fd in files]
                if dirs:
                    calls.append(functools.partial(self._batched, (), dirs))
                self._side_by_side(calls)
                return
            for fd in files:
                os.fsync(fd)
            files = ()
            if not dirs:
                return
        self._batched(files, dirs)

    def _side_by_side(self, calls: Sequence[Callable[[], None]]) -> None:
        """Run ``calls`` at once (the first here, the rest on helpers); return when all have, or raise."""
        error: BaseException | None = None
        if not self._helpers_lock.acquire(blocking=False):
            # Not alone after all (a writer that was alone has not left yet): one after another.
            for call in calls:
                call()
            return
        try:
            while len(self._helpers) < len(calls) - 1:
                self._helpers.append(_Helper())
            helpers = self._helpers[: len(calls) - 1]
            for helper, call in zip(helpers, calls[1:], strict=True):
                helper.start(call)
            try:
                calls[0]()
            except BaseException as e:
                error = e
            for helper in helpers:
                failed = helper.wait()  # always waited for: its call uses the caller's descriptors
                error = error or failed
            self.side_by_side += 1
        finally:
            self._helpers_lock.release()
        if error is not None:
            raise error

    def close(self) -> None:
        """Let the helper threads go (the next lone round starts them again)."""
        with self._helpers_lock:
            helpers, self._helpers = self._helpers, []
            for helper in helpers:
                helper.stop()

    def _batched(self, files: Sequence[int], dirs: Sequence[str]) -> None:
        """Join the open batch; its leader flushes it (see the module docstring)."""
        with self._cond:
            batch = self._open
            batch.writers += 1
            batch.files.extend(files)
            batch.dirs.extend(dirs)
            while not batch.done and self._flushing:
                self._cond.wait()
            if not batch.done:
                # The leader: close this batch (later writers start the next) and flush it here.
                self._flushing = True
                self._open = _Batch()
                leader = True
            else:
                leader = False
        if leader:
            try:
                self.flush(batch.files, batch.dirs)
            except BaseException as e:
                batch.error = e
            with self._cond:
                batch.done = True
                self._flushing = False
                self.batches += 1
                self.synced += batch.writers
                self._cond.notify_all()
        if batch.error is not None:
            error = batch.error
            if leader:
                raise error
            raise OSError(getattr(error, "errno", None), f"flush failed: {error}") from error
