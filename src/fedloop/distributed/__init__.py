"""Data-parallel training: PyTorch DDP launched elastically (torch.distributed) or on Ray Train.

Importing this package loads neither torch nor ray: they load when a launcher, a worker or the
driver first needs them.
"""

from fedloop.distributed.checkpoint import (
    CHECKPOINT_PREFIX,
    Checkpoint,
    decode_checkpoint,
    encode_checkpoint,
    find_checkpoint,
    list_checkpoints,
    save_checkpoint,
)
from fedloop.distributed.job import JobSpec, check_workers, rendezvous_endpoint, steps_per_epoch
from fedloop.distributed.launch import ElasticLauncher, Launcher
from fedloop.distributed.progress import Progress, ProgressWatcher, StepReporter, read_step_file
from fedloop.distributed.ray_train import RayTrainLauncher
from fedloop.distributed.registration import register_data_parallel_model, worker_contributors
from fedloop.distributed.training import (
    DataParallelResult,
    make_launcher,
    resolve_backend,
    train_data_parallel,
)
from fedloop.distributed.worker import WorkerReport, build_adapter, run_worker

__all__ = [
    "CHECKPOINT_PREFIX",
    "Checkpoint",
    "DataParallelResult",
    "ElasticLauncher",
    "JobSpec",
    "Launcher",
    "Progress",
    "ProgressWatcher",
    "RayTrainLauncher",
    "StepReporter",
    "WorkerReport",
    "build_adapter",
    "check_workers",
    "decode_checkpoint",
    "encode_checkpoint",
    "find_checkpoint",
    "list_checkpoints",
    "make_launcher",
    "read_step_file",
    "register_data_parallel_model",
    "rendezvous_endpoint",
    "resolve_backend",
    "run_worker",
    "save_checkpoint",
    "steps_per_epoch",
    "train_data_parallel",
    "worker_contributors",
]
