"""`fit`: the shared supervised training loop (epochs of shuffled minibatches + periodic evaluation).

Each epoch's order is a permutation seeded by `ctx.seed_for(f"fit/shuffle/{epoch}")`, so a resumed run
regenerates the order of an interrupted epoch and skips the batches it already did. Under
`torchrun` every rank takes its slice of each batch and DDP averages the gradients.
RL, GAN and MCTS loops do not use this: they are written out in their experiment files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dldojo.engine.run import RunContext

Batch = tuple[torch.Tensor, ...]


def epoch_permutation(ctx: RunContext, n: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The order of epoch `epoch`'s examples: the same on every rank and after a resume."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed_for(f"fit/shuffle/{epoch}")))


def fit(
    ctx: RunContext,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Sequence[torch.Tensor] | torch.utils.data.Dataset,
    loss_fn: Callable[[torch.nn.Module, Batch], torch.Tensor],
    *,
    epochs: float,
    batch_size: int,
    scheduler: Any | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 1,
    grad_clip: float | None = None,
    shuffle: bool = True,
    collate: Callable | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    on_step: Callable[[int], None] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train `model` for `epochs`; returns the metrics of the last evaluation.

    `train` is either a tuple of equally long tensors (indexed directly: fastest) or a map-style
    Dataset (loaded through a DataLoader). `loss_fn(model, batch)` returns the mean loss of a batch.
    `scheduler.step()` is called after every optimiser step, then `on_step(step)` (e.g. weight
    averaging); with a scheduler the learning rate of the first parameter group is logged as `lr` at up to
    ~500 evenly spaced steps (`ctx.log_sampled`), so the report shows the warm-up, else once an epoch.
    `evaluate()` runs every `eval_every` epochs and after the last one, with the model in eval mode and
    gradients off. `epochs` may be fractional (9.9 epochs = ceil(9.9 · steps per epoch) steps); `drop_last`
    skips each epoch's incomplete last batch. Objects in `extra_state` (anything with `state_dict()` /
    `load_state_dict()`) are checkpointed and loaded in place with the model.
    """
    is_tensors = isinstance(train, tuple | list)
    n = len(train[0]) if is_tensors else len(train)  # type: ignore[arg-type]
    steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training examples with drop_last")
    total_steps = math.ceil(epochs * steps_per_epoch)
    last_epoch = math.ceil(total_steps / steps_per_epoch)
    extra_state = extra_state or {}
    net = ctx.wrap_model(model)

    state = {"model": model, "optimizer": optimizer, "loss_sum": 0.0, "loss_count": 0, "metrics": {},
             **({"scheduler": scheduler} if scheduler is not None else {}), **extra_state}
    step = ctx.restore(state)
    bar = ctx.progress(total_steps, initial=step)
    for epoch in range(step // steps_per_epoch, last_epoch):
        order = epoch_permutation(ctx, n, epoch, shuffle)
        model.train()
        batches = [order[i:i + batch_size] for i in range(0, steps_per_epoch * batch_size, batch_size)]
        epoch_steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
        for batch_index in range(step - epoch * steps_per_epoch, epoch_steps):
            index = batches[batch_index][ctx.rank::ctx.world_size]
            if is_tensors:
                batch = tuple(t[index] for t in train)  # type: ignore[union-attr]
            else:
                items = [train[int(i)] for i in index]  # type: ignore[index]
                batch = (collate or torch.utils.data.default_collate)(items)
            loss = loss_fn(net, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            lr = optimizer.param_groups[0]["lr"] if optimizer.param_groups else None  # this step's
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            if on_step is not None:
                on_step(step)
            if scheduler is not None and lr is not None:  # the schedule, warm-up included, not once an epoch
                ctx.log_sampled(step, total_steps, lr=lr)
            loss_value = loss.item()
            ctx.check_finite(loss_value, step)
            state["loss_sum"] += loss_value
            state["loss_count"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{state['loss_sum'] / state['loss_count']:.4f}",
                            **{k: f"{v:.4f}" for k, v in list(state["metrics"].items())[:1]})
            if batch_index == epoch_steps - 1:  # end of epoch: evaluate and log before checkpointing
                record = {"epoch": epoch + 1, "train_loss": state["loss_sum"] / state["loss_count"]}
                if evaluate is not None and ((epoch + 1) % eval_every == 0 or step == total_steps):
                    model.eval()
                    with torch.no_grad():
                        state["metrics"] = evaluate()
                    model.train()
                    record.update(state["metrics"])
                if scheduler is None and optimizer.param_groups:  # constant: once an epoch is enough
                    record["lr"] = optimizer.param_groups[0]["lr"]
                ctx.log(step, **record)
                state["loss_sum"], state["loss_count"] = 0.0, 0
            ctx.tick(step, state)
    bar.close()
    return state["metrics"]
