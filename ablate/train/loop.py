"""Train and evaluate one trial. Reads top to bottom: the pieces a step uses, then
``train_and_evaluate`` and its stages: set-up, resume, one epoch, evaluation and cost.

The result is a plain dict (final metrics and per-epoch history) so that the
dispatch layer can write it to a file and the store can ingest it later.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ablate.cost.selective import selective_latency
from ablate.data.build import DatasetPair, build_datasets, collate_eval, loader_options
from ablate.data.catalog import user_dataset
from ablate.data.collate import UnevenBatch, collate_train, uneven_batch_error
from ablate.data.evaluation import with_eval_data
from ablate.errors import TrialFailed, UserInputError
from ablate.evaluate.metrics import IGNORE_INDEX, ConfusionMatrix
from ablate.evaluate.runtimes import measure_trial_latency
from ablate.models.build import build_model
from ablate.models.weights import load_weights
from ablate.recipes.schema import TrainSpec, TrialSpec
from ablate.train import sharing
from ablate.train.checkpoint import (
    CHECKPOINT_NAME,
    BackgroundWriter,
    load_checkpoint,
    remove_dead_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ablate.train.events import EpochEnded, Progress, Resumed, Stepped
from ablate.train.schedule import lr_at
from ablate.trials.ids import spec_dict
from ablate.trials.resolve import eval_resolution, num_classes


def resolve_device(train: TrainSpec) -> torch.device:
    if train.device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("train.device: 'cuda' requested but no CUDA device is available")
    if train.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool, device: torch.device) -> None:
    """Deterministic kernels where torch has them (``train.deterministic``).

    ``warn_only``: some CUDA backward kernels (bilinear upsampling, used by every
    head here) have no deterministic version; torch warns instead of failing, so a
    CUDA run is repeatable only up to those kernels. On a CPU every kernel used is.
    """

    if on and device.type == "cuda":  # cuBLAS needs a fixed workspace to be repeatable
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on


def param_groups(model: nn.Module, train: TrainSpec) -> list[dict[str, Any]]:
    """Backbone, mask net and head parameters, each with its learning-rate multiplier."""
    mask = getattr(model, "mask_net", None)
    backbone = getattr(model, "backbone", None)
    mask_ids = {id(p) for p in mask.parameters()} if mask is not None else set()
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": [], "mask_net": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = "mask_net" if id(p) in mask_ids else "backbone" if id(p) in backbone_ids else "head"
        groups[key].append(p)
    mult = {"backbone": train.backbone_lr_mult, "head": train.head_lr_mult,
            "mask_net": train.mask_lr_mult}
    return [{"params": ps, "name": k, "lr_mult": mult[k]} for k, ps in groups.items() if ps]


def make_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    groups = param_groups(model, train)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum,
                               weight_decay=train.weight_decay)
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


def amp_dtype(train: TrainSpec, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or train.amp == "off":
        return None
    if train.amp == "fp16":
        return torch.float16
    if train.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


class EpochBatches:
    """Shuffled mini-batches for one epoch from a (seed, epoch) generator.

    The order depends only on seed and epoch, so a resumed run can skip the
    batches it already trained on without drawing from any random state.
    Under DistributedDataParallel each of ``world`` ranks takes every ``world``-th sample
    of each batch: the same steps and global batch as one process.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.size // self.batch_size  # drop_last: BN needs more than one sample

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        for b in range(self.start, len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size][self.rank::self.world]


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) when the caller initialised torch.distributed, else (0, 1)."""

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels.

    On CUDA the mean of ``nll_loss2d`` adds with atomics (torch flags it as
    non-deterministic), so there the per-pixel losses are summed by an ordinary reduction
    and divided by the labelled count: the same value up to summation order, the same
    every run. The CPU keeps torch's own mean (the figures recorded so far).
    """
    if not logits.is_cuda:
        return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    return labelled_mean_cross_entropy(logits, target)


def labelled_mean_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
    return per_pixel.sum() / (target != IGNORE_INDEX).sum()


def segmentation_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor, model: nn.Module,
                      aux_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    loss = cross_entropy(outputs["out"], target)
    parts = {"loss_ce": loss.detach()}
    if "aux" in outputs and aux_weight > 0:
        aux = cross_entropy(outputs["aux"], target)
        parts["loss_aux"] = aux.detach()
        loss = loss + aux_weight * aux
    extra = getattr(model, "extra_losses", None)
    if extra is not None:
        for name, value in extra(outputs).items():
            parts[name] = value.detach()
            loss = loss + value
    return loss, parts


@torch.no_grad()
def evaluate(model: nn.Module, loader, n_classes: int, device: torch.device,
             class_names: list[str], dtype: torch.dtype | None = None,
             world: int = 1) -> dict[str, float]:
    """One confusion matrix over the whole set; mask density per image if the model has one.

    ``world`` > 1 (DistributedDataParallel): every rank calls this at once with its share
    of the set (``make_loaders``), evaluating rank 0's model (its normalisation statistics
    are given to every rank first); the counts are summed over the ranks and each rank
    returns the figures of the whole set: those one process gives, ``world`` times sooner.
    """
    if world > 1:
        for buffer in model.buffers():  # BatchNorm's running statistics differ per rank
            dist.broadcast(buffer, src=0)
    model.eval()
    confusion = ConfusionMatrix(n_classes, device)
    densities: list[torch.Tensor] = []
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    for images, labels in loader:
        with sharing.gpu_work():  # waits while a trial on a shared device times latency
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                outputs = model(images)
            confusion.update(outputs["out"].argmax(1), labels)
            if "mask" in outputs:
                densities.append(outputs["mask"].float().flatten(1).mean(1).cpu())
    if world > 1:
        dist.all_reduce(confusion.counts)  # whole pixel counts: exact in any order
        densities = _gathered_in_order(densities, world)
    metrics = confusion.compute().as_metrics(class_names)
    if densities:
        d = torch.cat(densities)
        metrics["mask_density"] = float(d.mean())
        metrics["mask_density_std"] = float(d.std(unbiased=False))
    model.train()
    return metrics


def _gathered_in_order(shard: list[torch.Tensor], world: int) -> list[torch.Tensor]:
    """Every rank's per-image figures, in the set's order (rank r holds images r, r +
    world, ...), so their mean and spread sum in the order one process sums them."""
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, torch.cat(shard) if shard else torch.zeros(0))
    if not sum(len(p) for p in parts):
        return []
    whole = torch.empty(sum(len(p) for p in parts), dtype=parts[0].dtype)
    for rank, part in enumerate(parts):
        whole[rank::world] = part
    return [whole]


@dataclass
class TrialRun:
    """One trial's training: what :func:`set_up` builds, and the step and history reached.

    ``model`` is the plain module (losses, checkpoints, evaluation); ``forward`` is the
    module a training step calls: ``model`` itself, or its DistributedDataParallel wrapper.
    """

    spec: TrialSpec
    device: torch.device
    data: DatasetPair
    n_classes: int
    model: nn.Module
    forward: nn.Module
    weights_report: dict[str, Any] | None
    channels_last: bool
    dtype: torch.dtype | None  # autocast's, None without mixed precision
    scaler: torch.amp.GradScaler
    optimizer: torch.optim.Optimizer
    rank: int
    world: int  # processes training the trial together (DistributedDataParallel)
    batches: EpochBatches
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader  # the whole set: latency parity (rank 0)
    eval_loader: torch.utils.data.DataLoader  # this rank's share of it: evaluation
    augment: Any  # the training set's random source (checkpointed), or None
    steps_per_epoch: int
    total_steps: int
    epochs: int
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train_and_evaluate(spec: TrialSpec, run_dir: Path, progress: Progress | None = None
                       ) -> dict[str, Any]:
    """Train ``spec`` from scratch or from ``run_dir``'s checkpoint; return the result dict."""
    progress = progress or (lambda event: None)
    run = set_up(spec)
    checkpoint_path = Path(run_dir) / CHECKPOINT_NAME
    resume(run, checkpoint_path, progress)
    # looked up at call time, so that a benchmark can wrap save_checkpoint
    writer = BackgroundWriter(checkpoint_path, lambda path, payload: save_checkpoint(path, payload))

    run.model.train()
    autocast = torch.autocast(run.device.type, dtype=run.dtype) if run.dtype \
        else contextlib.nullcontext()
    last_val: dict[str, float] | None = None
    try:
        while run.step < run.total_steps:
            epoch = run.step // run.steps_per_epoch
            metrics = train_epoch(run, epoch, autocast, writer, progress)
            val = end_epoch(run, epoch, metrics, writer, progress)
            if val is not None:
                last_val = val
    finally:
        writer.wait()  # finish a checkpoint being written, even when training failed
    return final_result(run, last_val)


# -- set-up ----------------------------------------------------------------------------


def set_up(spec: TrialSpec) -> TrialRun:
    """Seed, then build the datasets, model, optimizer, scaler, loaders (in this order)."""
    train = spec.train
    device = prepare_process(train, spec.seed)
    n_classes = num_classes(spec)
    separate = spec.eval_data.name is not None  # the training root's val split goes unread
    data = build_datasets(spec.data, seed=spec.seed, num_classes=n_classes, val=not separate)
    if separate:  # validate on another dataset ([base.eval_data])
        data = with_eval_data(data, spec.eval_data, spec.data, seed=spec.seed,
                              num_classes=n_classes)
    model, weights_report, channels_last = place_model(spec, n_classes, device)
    dtype = amp_dtype(train, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = make_optimizer(model, train)
    rank, world, forward = distribute(model, train)
    if train.compile:  # inductor; its compile time shows as the first step's
        forward = torch.compile(forward)
    batches, train_loader, val_loader = make_loaders(spec, data, device, rank, world)
    eval_loader = val_loader if world == 1 else share_of_validation(spec, data, device, rank,
                                                                    world)
    steps_per_epoch = len(batches)
    total_steps = train.iterations or steps_per_epoch * (train.epochs or 1)
    return TrialRun(
        spec=spec, device=device, data=data, n_classes=n_classes, model=model, forward=forward,
        weights_report=weights_report, channels_last=channels_last, dtype=dtype, scaler=scaler,
        optimizer=optimizer, rank=rank, world=world, batches=batches, train_loader=train_loader,
        val_loader=val_loader, eval_loader=eval_loader, augment=getattr(data.train, "random", None),
        steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        epochs=math.ceil(total_steps / steps_per_epoch))


def prepare_process(train: TrainSpec, seed: int) -> torch.device:
    """The device; global seeds, deterministic kernels and cuDNN autotuning as ``train`` asks."""
    device = resolve_device(train)
    seed_everything(seed)
    set_deterministic(train.deterministic, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark and not train.deterministic
    return device


def place_model(spec: TrialSpec, n_classes: int, device: torch.device
                ) -> tuple[nn.Module, dict[str, Any] | None, bool]:
    """The model with its pretrained weights, on ``device``; the weights report and whether
    it is in channels-last memory format."""
    model = build_model(spec.model, n_classes)
    weights_report = None
    if spec.model.weights != "none" or spec.model.weights_path:
        weights_report = load_weights(model, spec.model)
    train = spec.train
    channels_last = train.channels_last is True or (
        train.channels_last == "auto" and device.type == "cuda")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return model, weights_report, channels_last


def distribute(model: nn.Module, train: TrainSpec) -> tuple[int, int, nn.Module]:
    """(rank, world size, the module to call in training steps).

    Several processes (a Slurm trial with several GPUs): DistributedDataParallel averages
    the gradients; ``model`` stays the plain module for losses, checkpoints and evaluation.
    """
    rank, world = distributed_rank_world()
    forward: nn.Module = model
    if world > 1:
        if train.batch_size < world:
            raise UserInputError(f"train.batch_size: {train.batch_size} is smaller than the "
                                 f"{world} processes that share each batch")
        # unused: an aux head with aux_weight 0, a mask net a variant bypasses
        forward = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    return rank, world, forward


def make_loaders(spec: TrialSpec, data: DatasetPair, device: torch.device, rank: int,
                 world: int) -> tuple[EpochBatches, torch.utils.data.DataLoader,
                                      torch.utils.data.DataLoader]:
    """This rank's epoch batches, the training loader that draws them, the validation loader."""
    train = spec.train
    opts = loader_options(spec.data, device.type)
    batches = EpochBatches(len(data.train), train.batch_size, spec.seed, rank, world)
    if len(batches) == 0:
        raise UserInputError(
            f"train.batch_size: {train.batch_size} is larger than the training set ({len(data.train)})")
    # the generator seeds DataLoader workers; without workers the dataset's own one is used
    train_loader = torch.utils.data.DataLoader(
        data.train, batch_sampler=batches, collate_fn=collate_train,
        generator=torch.Generator().manual_seed(spec.seed), **opts)
    val_loader = torch.utils.data.DataLoader(
        data.val, batch_size=spec.eval.batch_size, shuffle=False, collate_fn=collate_eval, **opts)
    return batches, train_loader, val_loader


def share_of_validation(spec: TrialSpec, data: DatasetPair, device: torch.device, rank: int,
                        world: int) -> torch.utils.data.DataLoader:
    """Rank ``rank``'s share of the validation set under DistributedDataParallel: images
    ``rank``, ``rank + world``, ... (``evaluate`` sums the ranks' counts)."""
    share = torch.utils.data.Subset(data.val, range(rank, len(data.val), world))
    return torch.utils.data.DataLoader(
        share, batch_size=spec.eval.batch_size, shuffle=False, collate_fn=collate_eval,
        **loader_options(spec.data, device.type))


# -- checkpoints -----------------------------------------------------------------------


def resume(run: TrialRun, checkpoint_path: Path, progress: Progress) -> None:
    """Continue from ``checkpoint_path`` when it holds this very spec; else start at step 0.

    Rank 0 first removes the temporary files of saves that a kill cut short: it is the
    run folder's one writer (the trial's claim), so each is dead, and a trial preempted
    many times mid-save would otherwise keep one checkpoint-sized file per preemption."""
    if run.rank == 0:
        remove_dead_temporaries(checkpoint_path)
    state = load_checkpoint(checkpoint_path)
    if state is not None and state.get("spec") == spec_dict(run.spec):
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scaler.load_state_dict(state["scaler"])
        run.step, run.history = state["step"], state["history"]
        set_rng_state(state["rng"])
        if run.augment is not None:
            run.augment.set_state(state.get("augment"))
        progress(Resumed(run.step))


def checkpoint(run: TrialRun, writer: BackgroundWriter) -> None:
    """Hand everything a resume needs to ``writer`` (rank 0 only)."""
    if run.rank != 0:  # the ranks hold the same weights; one writes them
        return
    writer.save({
        "spec": spec_dict(run.spec), "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
        "step": run.step, "history": run.history, "rng": rng_state(),
        "augment": run.augment.state() if run.augment is not None else None,
    })


# -- train -----------------------------------------------------------------------------


def train_epoch(run: TrialRun, epoch: int, autocast: contextlib.AbstractContextManager,
                writer: BackgroundWriter, progress: Progress) -> dict[str, float]:
    """Train from ``run.step`` to the end of ``epoch`` (0-based) or of training; the
    epoch's training loss and throughput."""
    train = run.spec.train
    run.batches.epoch, run.batches.start = epoch, run.step % run.steps_per_epoch
    set_progress = getattr(run.model, "set_progress", None)
    # the losses add up on the device, read only when reported: a read per step would
    # wait for the GPU each step and leave it idle while the next step is launched
    running = torch.zeros((), dtype=torch.float64, device=run.device)
    seen, t0 = 0, time.perf_counter()
    data_seconds, fetch_start = 0.0, t0  # time spent waiting for the next batch
    first_step_seconds = None
    for batch in run.train_loader:
        if isinstance(batch, UnevenBatch):  # one line, not a collate traceback
            data = run.spec.data  # a data.builder's trial has data.name "shapes", unread
            raise uneven_batch_error(batch, user_dataset(data) or data.name, train.batch_size)
        images, labels = batch
        data_seconds += time.perf_counter() - fetch_start
        lr = lr_at(run.step, run.total_steps, train.lr, train.schedule, train.power,
                   train.warmup_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        if set_progress is not None:
            set_progress(run.step / run.total_steps)
        step_start = time.perf_counter()
        with sharing.gpu_work():  # waits while a trial on a shared device times latency
            running += train_step(run, images, labels, autocast).detach()
        run.step += 1
        seen += 1
        if run.step == 1 and train.compile:  # compiling: reported apart from throughput
            float(running)
            first_step_seconds = time.perf_counter() - step_start
        if run.step == sharing.MEMORY_PROBE_STEP:
            sharing.report_memory(run.device)
        if run.step % train.log_every == 0 or run.step == run.total_steps:
            loss = finite_mean(running, seen, run.step, epoch)
            progress(Stepped(run.step, run.total_steps, epoch + 1, run.epochs, loss, lr))
        # not on an epoch's last step: the epoch-end checkpoint follows with the epoch's
        # history entry, which a resume from this one would lose
        ends_epoch = run.step % run.steps_per_epoch == 0 or run.step >= run.total_steps
        if train.checkpoint_every and run.step % train.checkpoint_every == 0 and not ends_epoch:
            finite_mean(running, seen, run.step, epoch)  # never checkpoint diverged weights
            checkpoint(run, writer)
        if run.step >= run.total_steps:
            break
        fetch_start = time.perf_counter()
    train_loss = finite_mean(running, seen, run.step, epoch) if seen else 0.0
    epoch_seconds = time.perf_counter() - t0
    metrics = {
        "train_loss": train_loss,
        "epoch_seconds": epoch_seconds,
        "images_per_second": seen * train.batch_size / max(epoch_seconds, 1e-9),
        "data_wait_fraction": data_seconds / max(epoch_seconds, 1e-9),
    }
    if first_step_seconds is not None:
        metrics["first_step_seconds"] = first_step_seconds
    return metrics


def finite_mean(running: torch.Tensor, seen: int, step: int, epoch: int) -> float:
    """The mean loss of the epoch's ``seen`` steps so far; a trial whose loss is no longer
    a number fails here (a diverged step makes every later sum nan or inf)."""
    total = float(running)
    if not math.isfinite(total):
        raise TrialFailed(f"loss became {total / seen} by step {step} (epoch {epoch + 1})")
    return total / seen


def train_step(run: TrialRun, images: torch.Tensor, labels: torch.Tensor,
               autocast: contextlib.AbstractContextManager) -> torch.Tensor:
    """Forward, loss, backward and one optimizer step on one batch; the batch's loss."""
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast:
        outputs = run.forward(images)
        loss, _parts = segmentation_loss(outputs, labels, run.model, run.spec.model.aux_weight)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.spec.train.grad_clip:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.spec.train.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss


def end_epoch(run: TrialRun, epoch: int, metrics: dict[str, float], writer: BackgroundWriter,
              progress: Progress) -> dict[str, float] | None:
    """Evaluate when due (every ``eval.every`` epochs and after the last), record the epoch's
    history entry, report it and checkpoint; the validation metrics, if evaluated."""
    entry = {"epoch": epoch + 1, "step": run.step, "metrics": metrics}
    val = None
    if evaluates(run, epoch):
        val = evaluate(run.model, run.eval_loader, run.n_classes, run.device,
                       run.data.class_names, run.dtype, run.world)
        entry["metrics"].update({f"val_{k}": v for k, v in val.items() if "/" not in k})
    run.history.append(entry)
    progress(EpochEnded(entry["epoch"], run.epochs, run.step, dict(entry["metrics"])))
    checkpoint(run, writer)
    return val


def evaluates(run: TrialRun, epoch: int) -> bool:
    """Whether the trial is evaluated at the end of ``epoch``: every ``eval.every`` epochs
    and after the last. Under DistributedDataParallel every rank evaluates its share of the
    set together (``evaluate``)."""
    return run.step >= run.total_steps or (epoch + 1) % run.spec.eval.every == 0


# -- final evaluation and cost ---------------------------------------------------------


def final_result(run: TrialRun, last_val: dict[str, float] | None) -> dict[str, Any]:
    """The result dict: final metrics (the last evaluation, or a new one), latency when
    ``eval.latency`` asks for it, the per-epoch history and the device. Ranks other than
    0 trained beside rank 0, whose result is the trial's: they evaluate their share of the
    set with it and return their training figures, timing nothing."""
    spec, device = run.spec, run.device
    val = last_val or evaluate(run.model, run.eval_loader, run.n_classes, device,
                               run.data.class_names, run.dtype, run.world)  # every rank
    if run.rank != 0:
        return {"final": training_figures(run, {}), "epochs": run.history,
                "weights_report": run.weights_report, "device": str(device),
                "device_name": _device_name(device), "runtimes": None}
    final = training_figures(run, val)
    runtimes = None
    if spec.eval.latency:  # every runtime x batch size; parity on the evaluation images
        # on a device shared with other trials: timed with the device to itself, else
        # the figures are withheld (environment: sharing)
        with sharing.alone_on_device() as window:
            figures, runtimes = measure_trial_latency(run.model, spec, device, run.val_loader,
                                                      run.n_classes)
            if spec.model.selective.enabled and "mask_density" in final:
                # latency_ms: sparse execution at the measured density; latency_ms_dense
                figures.update(selective_latency(run.model, eval_resolution(spec), device,
                                                 final["mask_density"],
                                                 spec.eval.latency_warmup,
                                                 spec.eval.latency_runs))
        final.update(sharing.publishable(figures, window))
    outcome = {"final": final, "epochs": run.history, "weights_report": run.weights_report,
               "device": str(device), "device_name": _device_name(device),
               "runtimes": runtimes}
    if device.type == "cuda":  # what packing trials on a device goes by
        outcome["gpu_peak_memory_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    return outcome


def training_figures(run: TrialRun, final: dict[str, float]) -> dict[str, float]:
    """``final`` with the last epoch's training loss and the steps trained."""
    final["train_loss"] = run.history[-1]["metrics"]["train_loss"] if run.history \
        else float("nan")
    final["steps"] = float(run.step)
    return final


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
