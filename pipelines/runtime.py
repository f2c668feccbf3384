"""The one place that starts or joins Ray: embedded by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os

import psutil
import ray

from curate.errors import ConfigError

ADDRESS_ENV = ("CURATE_RAY_ADDRESS", "RAY_ADDRESS")


def resolve_address(address: str | None) -> str | None:
    """The Ray address to join: the argument, else CURATE_RAY_ADDRESS or RAY_ADDRESS, else None (embedded)."""
    if address:
        return address
    for var in ADDRESS_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return None


def init_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start an embedded Ray runtime (local CPUs, object store sized from free memory) or join `address`.

    A no-op when Ray is already initialised in this process. Dashboard off; order preserved in Ray Data.
    """
    if ray.is_initialized():
        return
    target = resolve_address(address)
    try:
        if target is None:
            store = int(min(psutil.virtual_memory().available * 0.25, 4 * 1024**3))
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                object_store_memory=store,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
        else:
            ray.init(address=target, logging_level=logging.ERROR, log_to_driver=False)
    except ConnectionError as exc:
        raise ConfigError(f"could not connect to the Ray cluster at '{target}': {exc}") from exc
    except ray.exceptions.AuthenticationError as exc:
        raise ConfigError(
            f"the Ray cluster at '{target}' refused this client's token; set RAY_AUTH_TOKEN_PATH to the "
            f"cluster's token file ({exc})"
        ) from exc
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = True


def shutdown_ray() -> None:
    """Disconnect from (or stop) the Ray runtime started by `init_ray`."""
    if ray.is_initialized():
        ray.shutdown()
