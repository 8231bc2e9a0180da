"""Dask clusters for flowseg: a local one whose workers share the cores, or a remote scheduler.

Needs the ``dask`` extra: ``pip install "flowseg[dask]"``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flowseg.errors import InputError

log = logging.getLogger(__name__)


def worker_env(workers: int, cores: int | None = None) -> dict[str, str]:
    """Thread settings that share ``cores`` (all of this machine's by default) among workers.

    Parameters
    ----------
    workers : int
    cores : int, optional

    Returns
    -------
    env : dict of str
        ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
        ``NUMBA_NUM_THREADS``, for the worker processes' environment before they start.
    """
    threads = str(max(1, (cores or os.cpu_count() or 1) // max(1, workers)))
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    return dict.fromkeys(names, threads)


def local_cluster(workers: int, *, cores: int | None = None, dashboard_address: str | None = ":0",
                  ) -> Any:
    """Start a ``LocalCluster`` of ``workers`` processes that share the cores for torch.

    Two of dask's defaults for worker processes slow torch down, and are replaced here through
    the nanny's ``pre-spawn-environ`` (a variable passed as ``env`` arrives too late):
    ``OMP_NUM_THREADS=1`` (and MKL's, OpenBLAS's), which leaves torch one core whatever ``env``
    says, so :func:`worker_env`'s counts are set instead; and ``MALLOC_TRIM_THRESHOLD_=65536``,
    which hands freed memory back to the system at once, so that every tile's activations are
    faulted in anew: measured on a 2,304^2 block, the network took 4.2 s with it and 2.1 s
    without it (2 cores).

    Parameters
    ----------
    workers : int
    cores : int, optional
        Cores to share; all of this machine's by default.
    dashboard_address : str or None
        ``":0"``: any free port. None starts no dashboard; two such clusters at once were seen
        to contend for port 8787 all the same (a warning), so tests use ``":0"``.

    Returns
    -------
    cluster : distributed.LocalCluster
    """
    import dask
    from distributed import LocalCluster

    key, trim = "distributed.nanny.pre-spawn-environ", "MALLOC_TRIM_THRESHOLD_"
    threads = worker_env(workers, cores)
    environ = {k: v for k, v in dask.config.get(key, {}).items() if k != trim} | threads
    # The nanny lets this process's environment win over its configuration, and writes its
    # settings into this environment when it starts a worker: set ours for the start, then put
    # back what was there, so that a second cluster is not given the first one's counts.
    saved = {name: os.environ.get(name) for name in (*threads, trim)}
    os.environ.update(threads)
    os.environ.pop(trim, None)
    try:
        with dask.config.set({key: environ}):
            # silence_logs: the workers' own INFO lines (~30 a run) are dask's business
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                dashboard_address=dashboard_address,
                                silence_logs=logging.ERROR)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_client(address: str | None = None, *, workers: int = 2) -> Any:
    """Connect to a scheduler, or start a local cluster of ``workers`` processes.

    Each local worker gets an equal share of the CPU cores (:func:`worker_env`).

    Parameters
    ----------
    address : str, optional
        ``tcp://host:port`` of a running scheduler; a ``LocalCluster`` when None.
    workers : int

    Returns
    -------
    client : distributed.Client
        Closing it also closes a local cluster it started.
    """
    from distributed import Client

    if address:
        try:
            return Client(address, timeout="20s")
        except (ValueError, OSError, TimeoutError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"--dask {address}: no scheduler reached there ({reason})") from None
    client = Client(local_cluster(workers))
    log.info("dask dashboard: %s", client.dashboard_link)
    return client
