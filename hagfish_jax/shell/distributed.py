"""One population over several processes: the same code on one process, on N CPU
processes on one machine, on a multi-host GPU cluster or on a TPU pod slice.

Every process runs the same script. :func:`initialize` joins the processes (before any
other JAX call); :func:`~hagfish_jax.core.sharding.sharded` compiles the population's
tuned program over a mesh of every process's devices, so each process builds and trains
only its slice of the members while the tuner ranks, and PBT exploits, across all of
them; :func:`fetch` brings results (rows, scores, the best member) back to every process
as NumPy arrays. ``jax.device_get`` cannot do that last step: a member that lives on
another process's device is not addressable here.

    import jax, hagfish_jax as hj
    hj.distributed.initialize()   # a TPU pod slice or SLURM: found on its own
    run = hj.distributed.sharded(program)       # program: hj.program.build(..., population=N)
    carry = run.init(jax.random.key(0), hparams)
    carry, rows = run.scan(carry, 10)
    rows, best = hj.distributed.fetch((rows, carry.best))

Every process must make the same calls in the same order with the same arguments:
:func:`fetch` and the compiled programs are collective operations.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from ..core._checks import integer
from ..core.population import make_mesh
from ..core.sharding import Sharded, carry_shardings, is_key, sharded, shardings

__all__ = [
    "Cluster",
    "Sharded",
    "carry_shardings",
    "cluster",
    "fetch",
    "initialize",
    "make_mesh",
    "sharded",
    "shardings",
]


class Cluster(NamedTuple):
    """Where this process stands among the others.

    Attributes:
      process: this process's index (0 is the one to write files and print).
      processes: how many processes take part.
      local_devices: the devices this process drives.
      devices: the devices of all processes together (the mesh's size by default).
    """

    process: int
    processes: int
    local_devices: int
    devices: int


def cluster() -> Cluster:
    """This process's :class:`Cluster` (one process when :func:`initialize` was not
    called).

    >>> import hagfish_jax as hj
    >>> hj.distributed.cluster().processes
    1
    """
    return Cluster(
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count()
    )


def _check_address(address: Any) -> None:
    host, sep, port = str(address).rpartition(":")
    if not isinstance(address, str) or not sep or not host or not port.isdigit():
        raise ValueError(
            "distributed.initialize: coordinator_address must be 'host:port' "
            f"(like '127.0.0.1:1234'), got {address!r}"
        )
    if not 0 < int(port) < 65536:
        raise ValueError(f"distributed.initialize: port {port} is outside 1..65535")


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | list[int] | None = None,
    cpu_collectives: str = "gloo",
    timeout: int = 300,
) -> Cluster:
    """Join this process to the others (``jax.distributed.initialize``), first thing.

    With no arguments JAX finds the cluster itself: a Cloud TPU pod slice, SLURM, Open
    MPI, Kubernetes, or ``JAX_COORDINATOR_ADDRESS`` in the environment. Elsewhere (N
    processes on one machine, hosts of a GPU cluster started by hand) give all three:
    the same ``coordinator_address`` everywhere (process 0's host and a free port),
    ``num_processes`` and this process's ``process_id``. ``num_processes=1`` is a
    single process: nothing is joined, so a script can pass its own launch settings
    either way. On CPU, processes talk through ``cpu_collectives`` (gloo, built into
    jaxlib; ``"mpi"`` needs an MPI library).

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator service.
      num_processes: how many processes take part (an integer >= 1).
      process_id: this process's index, ``0 <= process_id < num_processes``.
      local_device_ids: the local devices this process drives (default: all).
      cpu_collectives: ``"gloo"`` or ``"mpi"``: what CPU devices of different
        processes exchange data with.
      timeout: seconds to wait for the other processes to join; past it JAX ends
        this process (it does not raise).

    Returns:
      This process's :class:`Cluster`.

    Raises:
      ValueError: a malformed address, process counts or ids out of range, an unknown
        ``cpu_collectives``, or no cluster found when nothing was given.
      RuntimeError: JAX already computed something in this process (join before any
        other JAX call), or the process already joined with different settings.
    """
    if cpu_collectives not in ("gloo", "mpi"):
        raise ValueError(
            f"distributed.initialize: cpu_collectives must be 'gloo' or 'mpi', "
            f"got {cpu_collectives!r}"
        )
    if num_processes is not None:
        num_processes = integer("distributed.initialize: num_processes", num_processes, 1)
    if process_id is not None:
        process_id = integer("distributed.initialize: process_id", process_id, 0)
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(
                f"distributed.initialize: process_id must be below num_processes="
                f"{num_processes}, got {process_id}"
            )
    if coordinator_address is not None:
        _check_address(coordinator_address)
    timeout = integer("distributed.initialize: timeout", timeout, 1)
    if jax.distributed.is_initialized():
        here = cluster()
        wanted = (
            num_processes or here.processes,
            here.process if process_id is None else process_id,
        )
        if wanted != (here.processes, here.process):
            raise RuntimeError(
                f"distributed.initialize: already joined as process {here.process} of "
                f"{here.processes}, asked for {wanted[1]} of {wanted[0]}"
            )
        return here
    if num_processes == 1:
        return cluster()
    # Only the CPU client reads it; a GPU or TPU run keeps its own interconnect.
    if jax.config.jax_cpu_collectives_implementation != cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=timeout,
        )
    except ValueError as err:  # e.g. nothing given and no cluster found
        raise ValueError(
            f"distributed.initialize: {err} (JAX finds Cloud TPU, SLURM, Open MPI and "
            "Kubernetes clusters itself; elsewhere give coordinator_address, num_processes "
            "and process_id, or num_processes=1 for a single process)"
        ) from err
    except RuntimeError as err:
        raise RuntimeError(f"distributed.initialize: {err}") from err
    return cluster()


def _host(x: Any) -> Any:
    if not isinstance(x, jax.Array):
        return x
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:  # every process holds the whole value
        return np.asarray(x.addressable_data(0))
    return None  # gathered below, with the other processes


def fetch(tree: Any) -> Any:
    """NumPy copies of ``tree`` on every process, whichever process holds each part.

    Replicated and local arrays are copied as they are; an array split over other
    processes' devices is gathered (``process_allgather``). A collective when anything
    is split: every process calls it with a tree of the same layout. PRNG keys come
    back as their raw ``uint32`` data.

    Args:
      tree: a pytree of arrays (a carry, rows, ``carry.best``); non-array leaves pass.

    Returns:
      The same structure with ``numpy.ndarray`` leaves holding the global values.

    >>> import jax.numpy as jnp, hagfish_jax as hj
    >>> hj.distributed.fetch({"score": jnp.arange(3.0)})["score"].tolist()
    [0.0, 1.0, 2.0]
    """
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    leaves = [jax.random.key_data(x) if is_key(x) else x for x in leaves]
    host = [_host(x) for x in leaves]
    split = [i for i, h in enumerate(host) if h is None]
    if split:
        gathered = multihost_utils.process_allgather([leaves[i] for i in split], tiled=True)
        for i, value in zip(split, gathered, strict=True):
            host[i] = np.asarray(value)
    return jax.tree.unflatten(treedef, host)
