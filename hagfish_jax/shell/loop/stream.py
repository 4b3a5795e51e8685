"""Live data for the Loop: windows of batches pulled from a Python iterator.

A :class:`Stream` turns any iterable of batches (a generator reading a feed, a
gymnasium environment stepped on the host, a data loader) into the windows that
``hj.Loop.run(..., data=stream)`` trains on. Each window is ``window`` training
batches, stacked on a new leading axis so the task can ``lax.scan`` over them, and
``validation`` batches that follow them in the stream, held out of training: the
loop evaluates on the newest data, a validation window that rolls forward with the
stream, which is what a model on a drifting stream must do well on.

A background thread prepares the next windows while the device trains on the current
one (``prefetch``): it pulls the batches, stacks them with numpy and starts their copy
to the device, so a host that produces data about as fast as the device consumes it
keeps both busy. :attr:`Stream.stats` says how long the loop waited for data.

>>> import numpy as np, hagfish_jax as hj
>>> batches = ({"x": np.full((4, 2), i, np.float32)} for i in range(7))
>>> with hj.Stream(batches, window=2, validation=1) as stream:
...     shapes = [(t["x"].shape, v["x"].shape) for t, v in stream]
>>> shapes, stream.stats["windows"], stream.stats["dropped"]
([((2, 4, 2), (1, 4, 2)), ((2, 4, 2), (1, 4, 2))], 2, 1)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np

from ...core._checks import integer

__all__ = ["Stream", "next_window", "windows_of"]

_END = object()


class _Failed:
    """An exception raised by the source, carried to the consumer's thread."""

    def __init__(self, err: BaseException):
        self.err = err


def _shown(shapes: list) -> list[str]:
    """Each leaf's shape and dtype, as ``"(2,) float32"``."""
    return [f"{shape} {dtype}" for shape, dtype in shapes]


class Stream:
    """Windows of stacked batches from an iterable, prepared ahead on a thread.

    Args:
      source: an iterable of batches: pytrees of arrays (a tuple ``(x, y)``, a dict),
        every batch with the same structure and shapes (they are stacked, and a
        compiled window never changes shape).
      window: training batches per window (the leading axis of ``train``).
      validation: held-out batches per window, the newest ones (at least 1).
      prefetch: windows prepared ahead on a background thread; ``0`` pulls each
        window in the caller's thread when it is asked for.
      device_put: start copying each window to the default device as soon as it is
        stacked (``False`` hands out numpy arrays).

    Iterating yields ``(train, validation)`` pytrees. When the source ends, a last
    incomplete window is dropped (``stats["dropped"]`` counts its batches). A batch
    whose structure or shape differs from the first one raises ``ValueError`` where
    the loop asks for that window, as does any exception the source raises (with the
    source's own traceback chained).

    Raises:
      TypeError: ``source`` is not iterable.
      ValueError: ``window`` or ``validation`` below 1, ``prefetch`` below 0.
    """

    def __init__(
        self,
        source: Iterable[Any],
        window: int,
        validation: int = 1,
        prefetch: int = 2,
        *,
        device_put: bool = True,
    ):
        try:
            self._source = iter(source)
        except TypeError:
            raise TypeError(
                f"Stream: source must be an iterable of batches, got {type(source).__name__}"
            ) from None
        self.window = integer("Stream: window", window, 1)
        self.validation = integer("Stream: validation", validation, 1)
        self.prefetch = integer("Stream: prefetch", prefetch, 0)
        self.device_put = bool(device_put)
        self._treedef = None
        self._shapes: list | None = None
        self._pulled = 0
        self._done = False
        self._closing = threading.Event()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        #: windows handed out, batches pulled, batches dropped at the end, seconds the
        #: consumer waited for a window, seconds spent producing windows
        self.stats = {"windows": 0, "batches": 0, "dropped": 0, "wait_s": 0.0, "produce_s": 0.0}

    # -- producing ----------------------------------------------------------------------
    def _check(self, batch: Any) -> list:
        leaves, treedef = jax.tree.flatten(batch)
        leaves = [np.asarray(x) for x in leaves]
        shapes = [(x.shape, x.dtype) for x in leaves]
        if self._treedef is None:
            if not leaves:
                raise ValueError("Stream: the first batch holds no arrays")
            self._treedef, self._shapes = treedef, shapes
        elif treedef != self._treedef or shapes != self._shapes:
            raise ValueError(
                f"Stream: batch {self._pulled} has structure {treedef} and shapes "
                f"{_shown(shapes)}, but the first had {self._treedef} and "
                f"{_shown(self._shapes)}: every batch must have the same shapes and dtypes"
            )
        return leaves

    def _stack(self, batches: list[list]) -> Any:
        stacked = [np.stack(column) for column in zip(*batches)]
        tree = jax.tree.unflatten(self._treedef, stacked)
        return jax.device_put(tree) if self.device_put else tree

    def _produce(self) -> Any:
        """The next ``(train, validation)`` window, or ``_END``."""
        start = time.perf_counter()
        batches = []
        need = self.window + self.validation
        for batch in self._source:
            batches.append(self._check(batch))
            self._pulled += 1
            self.stats["batches"] += 1
            if len(batches) == need:
                break
        if len(batches) < need:
            self.stats["dropped"] += len(batches)
            return _END
        item = (self._stack(batches[: self.window]), self._stack(batches[self.window :]))
        self.stats["produce_s"] += time.perf_counter() - start
        return item

    def _run(self) -> None:
        # a window is produced only into a free slot: at most `prefetch` windows are
        # ready and not yet taken (memory stays bounded, the source is not read ahead)
        while not self._closing.is_set():
            if not self._slots.acquire(timeout=0.1):
                continue
            try:
                item = self._produce()
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                item = _Failed(err)
            self._queue.put(item)
            if item is _END or isinstance(item, _Failed):
                return

    # -- consuming ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self

    def __next__(self) -> tuple[Any, Any]:
        if self._done:
            raise StopIteration
        start = time.perf_counter()
        if self.prefetch == 0:
            try:
                item = self._produce()
            except BaseException as err:  # noqa: BLE001
                item = _Failed(err)
        else:
            if self._thread is None:
                self._queue = queue.Queue()
                self._slots = threading.Semaphore(self.prefetch)
                self._thread = threading.Thread(target=self._run, name="hagfish-stream")
                self._thread.daemon = True
                self._thread.start()
            item = self._queue.get()
            self._slots.release()
        self.stats["wait_s"] += time.perf_counter() - start
        if item is _END or isinstance(item, _Failed):
            self._done = True
            if isinstance(item, _Failed):
                if isinstance(item.err, ValueError) and str(item.err).startswith("Stream:"):
                    raise ValueError(str(item.err)) from None
                raise RuntimeError(
                    f"Stream: the source raised {type(item.err).__name__}: {item.err}"
                ) from item.err
            raise StopIteration
        self.stats["windows"] += 1
        return item

    def close(self) -> None:
        """Stop the background thread (the source is not read further)."""
        self._done = True
        self._closing.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        closing = getattr(self, "_closing", None)
        if closing is not None:
            closing.set()


def windows_of(data: Any) -> Iterator[tuple[Any, Any]]:
    """The Loop's view of ``data``: a :class:`Stream`, or any iterable of ``(train,
    validation)`` pairs (one per window, already on the shapes the task expects)."""
    if isinstance(data, Stream):
        return data
    try:
        it = iter(data)
    except TypeError:
        raise TypeError(
            "Loop.run: data must be a hj.Stream or an iterable of (train, validation) "
            f"windows, got {type(data).__name__}"
        ) from None
    return _pairs(it)


def _pairs(it: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    for i, item in enumerate(it):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(
                f"Loop.run: data window {i} is a {type(item).__name__}, not a "
                "(train, validation) pair"
            )
        yield item


def next_window(feed: Iterator) -> tuple | None:
    """``((train,), (validation,))`` for the task's calls, or ``None`` at the end."""
    try:
        train, validation = next(feed)
    except StopIteration:
        return None
    return (train,), (validation,)
