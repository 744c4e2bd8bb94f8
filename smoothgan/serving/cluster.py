"""Starting or joining Ray for ``smoothgan serve`` and ``smoothgan batch`` (Ray is imported only when called)."""

from __future__ import annotations

import logging
import os
from typing import Optional

from smoothgan.errors import InputError, SmoothganError

log = logging.getLogger(__name__)


def init_ray(address: Optional[str], num_cpus: Optional[int] = None) -> bool:
    """Start a private local Ray (``address=None``) or join the cluster at ``address``; True if this call did.

    A local start uses ``address="local"``: it never joins a cluster left running on this machine. Ray already
    initialised in this process (a caller's own ``ray.init``) is used as it is. Usage stats stay off unless the
    environment turns them on.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
        raise SmoothganError(f"cannot start or join {where}: {' '.join(str(exc).split())}") from None
    log.info("Ray %s: %s", "started locally" if address is None else f"joined {address}",
             ray.cluster_resources())
    return True




def check_backend(backend: str, device: str, precision: str) -> None:
    """Refuse, on the driver and before Ray starts, a backend/device/precision the backend table rules out.

    ``auto`` is checked by the replicas/actors themselves (it depends on what is installed where they run).
    """
    from smoothgan.backends import AUTO, PRECISIONS, get_spec

    if backend == AUTO:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        return
    spec = get_spec(backend)
    if device.partition(":")[0] not in spec.devices or precision not in spec.precisions:
        raise InputError(f"backend {backend} runs on {', '.join(spec.devices)} in {', '.join(spec.precisions)}, "
                         f"not {device} {precision}")


__all__ = ["check_backend", "init_ray"]
