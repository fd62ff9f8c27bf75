"""Several training processes (torchrun, the deepspeed launcher): what each rank settles before Hydra reads the
command line, and the one fix accelerate needs to run DeepSpeed on a machine without CUDA.

    torchrun --nproc_per_node N -m cadft train zero=3 ...
    deepspeed --num_gpus N --module cadft train zero=3 ...

- The deepspeed launcher passes `--local_rank=N` before the overrides: it is removed (LOCAL_RANK is set instead).
- OMP_NUM_THREADS, when unset, becomes CPUs / processes on this machine (torchrun sets 1, the deepspeed launcher
  nothing, and 2 ranks on 2 cores then took 1.8 s per step instead of 0.05 s).
- One run dir for all ranks: Hydra resolves `${now:...}` in every process, and ranks start up to a second apart.
  So the process group is started here, rank 0's start time is broadcast and set as CADFT_RUN_STAMP, which the
  run and sweep dirs in conf/config.yaml use. `hydra.run.dir=DIR` still decides when given. The group is the one
  accelerate and DeepSpeed use afterwards (gloo without CUDA, nccl with it).
- Only rank 0 writes Hydra's `.hydra/` and `train.log`; the other ranks log to the console.
- Every rank destroys the process group when its run ends (`leave`), so none aborts in exit.
"""

from __future__ import annotations

import os
import re
from datetime import datetime

RUN_STAMP_ENV = "CADFT_RUN_STAMP"
RUN_STAMP_FORMAT = "%Y-%m-%d/%H-%M-%S"  # the same layout as the config's `${now:%Y-%m-%d}/${now:%H-%M-%S}`
LOCAL_RANK_FLAG = re.compile(r"--local[-_]rank(=(\d+))?$")


def backend() -> str:
    """The collective backend: nccl between GPUs, gloo between CPU processes."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and talks to MLflow."""
    return int(os.environ.get("RANK", "0")) == 0


def prepare_launch(argv: list[str]) -> None:
    """Edit the command line's arguments (without the program) and the environment in place, before Hydra parses them.
    A single process has nothing to settle."""
    if world_size() == 1:
        return
    import torch  # only here: a single process checks its command line before torch is imported (cadft.cli.train)

    _default_thread_count()
    _init_process_group()
    _agree_on_run_stamp()
    if torch.distributed.get_rank() != 0:
        argv += ["hydra.output_subdir=null"]  # rank 0 writes .hydra/
        if not any(arg.startswith("hydra/job_logging=") for arg in argv):
            argv += ["hydra/job_logging=stdout"]  # rank 0 writes train.log


def leave() -> None:
    """Destroy the process group before the interpreter exits. Without it a gloo rank that ends while rank 0 still
    evaluates can abort in exit ("terminate called without an active exception": gloo's worker threads die with
    the interpreter), and the launcher then kills rank 0 mid-evaluation (seen once in CI). Local: the
    other ranks need not be at the same point."""
    if world_size() == 1:
        return
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def accept_local_rank_flag(argv: list[str]) -> None:
    """`--local_rank=N` / `--local_rank N` (deepspeed launcher, torch.distributed.launch) in the arguments (without the
    program) -> LOCAL_RANK."""
    for i, arg in enumerate(argv):
        match = LOCAL_RANK_FLAG.match(arg)
        if match:
            value = match.group(2) if match.group(2) is not None else argv[i + 1]
            del argv[i : i + (1 if match.group(2) is not None else 2)]
            os.environ["LOCAL_RANK"] = value
            return


def _default_thread_count() -> None:
    if "OMP_NUM_THREADS" in os.environ:
        return
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or world_size())
    threads = max(1, len(os.sched_getaffinity(0)) // local_processes)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for child processes (extension builds, data workers)
    import torch

    torch.set_num_threads(threads)  # this process: OpenMP read the variable when torch was imported


def _init_process_group() -> None:
    import torch

    if torch.distributed.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend())


def _agree_on_run_stamp() -> None:
    import torch

    stamp = [os.environ.get(RUN_STAMP_ENV) or datetime.now().strftime(RUN_STAMP_FORMAT)]
    torch.distributed.broadcast_object_list(stamp, src=0)
    os.environ[RUN_STAMP_ENV] = stamp[0]


def use_gloo_for_deepspeed_without_cuda() -> None:
    """Make accelerate see the DeepSpeed process group on a machine without CUDA.

    accelerate 1.15's `PartialState._prepare_backend` finds no backend under DeepSpeed without CUDA, so its state
    says one process while DeepSpeed runs two: DeepSpeed then rejects the batch size (`train_batch_size is not equal
    to micro_batch_per_gpu * gradient_acc_step * world_size 8 != 8 * 1 * 2`), and with that check removed every rank
    trains on the same batches. Answering gloo / MULTI_CPU in exactly that case fixes both; with CUDA (nccl) and
    without DeepSpeed nothing changes. Idempotent.
    """
    import torch
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    original = PartialState._prepare_backend
    if getattr(original, "cadft_gloo_fix", False):
        return

    def prepare_backend(self, cpu: bool = False, sagemaker_dp=False, backend: str | None = None):
        chosen, distributed_type = original(self, cpu, sagemaker_dp, backend)
        deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        if chosen is None and not cpu and deepspeed and "LOCAL_RANK" in os.environ and not torch.cuda.is_available():
            return "gloo", DistributedType.MULTI_CPU
        return chosen, distributed_type

    prepare_backend.cadft_gloo_fix = True
    PartialState._prepare_backend = prepare_backend
