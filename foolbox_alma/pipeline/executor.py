"""Where shards run: in this process, or as Ray tasks. The only place that knows which.

:func:`execute` hands every finished shard to ``on_result`` (the driver saves it) as soon as it is
done, whichever way it runs: in this process one after the other (:func:`run_here`), or on Ray
(:func:`run_on_ray`), one task per shard, each worker rebuilding the model from its spec.

Ray:

``address=None`` starts a local Ray instance on this machine (or joins the cluster named by
``RAY_ADDRESS`` when that is set); an address joins that cluster. Tasks ask for ``threads`` CPUs
(and one GPU each with ``device="cuda"``); at most ``workers`` run at a time. A worker that dies
(killed, out of memory, a lost node) is replaced and its shard run again, up to ``max_retries``
times (Ray's task retries); an exception raised by the attack itself is not retried (it would
fail again) and stops the run. Results are handed to ``on_result`` by the driver as tasks
return, so everything finished is saved even if the run is interrupted.
"""

import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import _runtime
from .engine import Hooks, Plan, Shard, ShardResult, run_shard
from .errors import EvaluationError

INSTALL = "pip install 'foolbox-alma[ray]' (or pip install ray)"


def execute(
    plan: Plan,
    shards: Sequence[Shard],
    on_result: Callable[[ShardResult], None],
    *,
    ray: Any = None,
    hooks: Optional[Hooks] = None,
    workers: Optional[int] = None,
    device: Optional[str] = None,
    info: Optional[Dict[str, Any]] = None,
) -> None:
    """Runs ``shards`` here (``ray`` None or False) or on Ray (True, ``"local"``: a local instance
    or the cluster of ``RAY_ADDRESS``; an address: that cluster). ``hooks`` apply in this process
    only (a Ray worker runs the plain loop); ``info`` receives how it ran."""
    if ray in (None, False):
        run_here(plan, shards, on_result, hooks)
        return
    address = None if ray in (True, "local", "") else str(ray)
    if info is not None:
        info["address"] = address or "local (or RAY_ADDRESS)"
    run_on_ray(plan, shards, on_result, address=address, workers=workers, device=device, info=info)


def run_here(
    plan: Plan,
    shards: Sequence[Shard],
    on_result: Callable[[ShardResult], None],
    hooks: Optional[Hooks] = None,
) -> None:
    """Runs the shards one after the other in this process."""
    for shard in shards:
        on_result(run_shard(plan, shard, hooks))


def _remote_shard(plan: Plan, shard: Shard) -> ShardResult:
    return run_shard(plan, shard)


def run_on_ray(
    plan: Plan,
    shards: Sequence[Shard],
    on_result: Callable[[ShardResult], None],
    *,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    device: Optional[str] = None,
    max_retries: int = 3,
    info: Optional[Dict[str, Any]] = None,
) -> None:
    """Runs ``shards`` as Ray tasks (see the module docstring); ``info`` receives the start-up
    seconds and the cluster's resources."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--ray needs Ray: {INSTALL}") from None

    threads = plan.threads or 1
    start = time.perf_counter()
    started_here = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        options: Dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": True,
            "configure_logging": False,
        }
        try:
            ray.init(address=address or None, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
            raise EvaluationError(f"could not start or join Ray at {where}: {error}") from None
        started_here = True
    if info is not None:
        info["ray_startup_seconds"] = time.perf_counter() - start
        info["ray_resources"] = {
            k: v for k, v in ray.cluster_resources().items() if "node" not in k
        }
    try:
        remote = ray.remote(_remote_shard).options(
            num_cpus=threads,
            num_gpus=1 if (device or "cpu").startswith("cuda") else 0,
            max_retries=max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": _runtime.thread_environment(threads)},
        )
        plan_ref = ray.put(plan)
        limit = max(1, workers or len(shards) or 1)
        queue: List[Shard] = list(shards)
        running: Dict[Any, Shard] = {}
        try:
            while queue or running:
                while queue and len(running) < limit:
                    shard = queue.pop(0)
                    running[remote.remote(plan_ref, shard)] = shard
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    shard = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as error:
                        cause = error.cause if getattr(error, "cause", None) else error
                        raise EvaluationError(
                            f"shard {shard.index} failed on a Ray worker: {cause}"
                        ) from None
                    except ray.exceptions.RayError as error:
                        raise EvaluationError(
                            f"shard {shard.index} failed on Ray after {max_retries} retries: "
                            f"{error}"
                        ) from None
                    on_result(result)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
    finally:
        if started_here:
            ray.shutdown()
