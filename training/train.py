"""The one train/evaluate loop every study uses.

The data sets are small enough to live on the device as tensors: batches are drawn by index from a seeded
permutation and images are augmented on the batch tensor, so a step has no per-sample Python work and no
host-device copies. Early stopping and the returned weights are chosen on the stop part of validation only; the
decide part is evaluated once, on the kept weights, so the accuracy decisions use was never used to choose them.
The test split is evaluated every epoch for the curves and never drives a decision.
"""
import copy
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lowrank_bench.training.config import TrainConfig
from lowrank_bench.training.measure import optimizer_state_bytes, param_counts, peak_memory, tensor_bytes, weights_bytes


def augment_images(x, generator, kind="affine"):
    """A randomly transformed copy of a (B, 1, H, W) batch, one transform per image.

    "affine", for digits: rotation (±10°), scaling (0.9–1.1) and shift (±2 px of 32); a mirrored digit is another
    symbol. "flip_crop", for clothing: a horizontal flip with probability 1/2 and a random crop of the image padded
    by 2 px (a whole-pixel shift of ±2, zeros coming in), the standard augmentation for such images.
    """
    B, W = x.shape[0], x.shape[-1]
    rand = lambda lo, hi: lo + (hi - lo) * torch.rand(B, device=x.device, generator=generator)
    px = 2 / W  # one pixel in the [-1, 1] coordinates of affine_grid
    if kind == "affine":
        angle, scale = rand(-math.pi / 18, math.pi / 18), rand(0.9, 1.1)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, rand(-2 * px, 2 * px)], 1),
                             torch.stack([sin, cos, rand(-2 * px, 2 * px)], 1)], 1)  # (B, 2, 3)
    elif kind == "flip_crop":
        mirror = torch.where(rand(0, 1) < 0.5, -1.0, 1.0)  # x -> -x, y kept
        shift = px * torch.randint(-2, 3, (B, 2), device=x.device, generator=generator)
        zero, one = torch.zeros_like(mirror), torch.ones_like(mirror)
        theta = torch.stack([torch.stack([mirror, zero, shift[:, 0]], 1),
                             torch.stack([zero, one, shift[:, 1]], 1)], 1)
    else:
        raise ValueError(f"unknown augmentation {kind!r}")
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def distillation_loss(logits, teacher_logits, temperature):
    """T² · KL(teacher ‖ student) of the temperature-softened outputs; T² keeps its gradients the size of the
    cross-entropy's as T changes (Hinton et al. 2015)."""
    return F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature ** 2


@torch.no_grad()
def evaluate(model, x, y, batch_size=1024):
    """(mean loss, accuracy, predictions) of `model` on the whole of (x, y)."""
    model.eval()
    loss, preds = 0.0, []
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        preds.append(logits.argmax(1))
    preds = torch.cat(preds)
    return loss / len(x), (preds == y).float().mean().item(), preds


def confusion_matrix(y, preds, n_classes):
    return torch.bincount(y * n_classes + preds, minlength=n_classes ** 2).view(n_classes, n_classes).tolist()


def final_metrics(model, splits, device):
    """What a kept model is judged by: accuracy and loss on the decide part (`val_*`) and on test, the test
    confusion matrix, and `outcomes`, which examples of each it gets right (training/outcomes.py)."""
    metrics, outcomes = {}, {}
    for name, part in (("val", "decide"), ("test", "test")):
        x, y = getattr(splits, f"x_{part}").to(device), getattr(splits, f"y_{part}").to(device)
        loss, acc, preds = evaluate(model, x, y)
        metrics |= {f"{name}_loss": loss, f"{name}_acc": acc}
        outcomes |= {name: (preds == y).cpu().numpy(), f"{name}_split": splits.split_id(part)}
        if part == "test":
            metrics["confusion"] = confusion_matrix(y, preds, len(splits.classes))
    return {**metrics, "outcomes": outcomes}


def make_optimizer(model, cfg: TrainConfig, total_steps):
    """AdamW over trainable parameters only; matrices decay, biases, norms and singular values do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    # fused: one kernel per step instead of a dozen elementwise passes; the attention model's 3.9M-weight embedding
    # made the unfused update about a fifth of a CPU training step.
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    warmup = max(1, int(cfg.warmup_frac * total_steps))

    def lr_factor(step):  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def autocast_dtype(cfg: TrainConfig, device):
    """The training step's forward dtype, "bf16" (autocast on CUDA with `amp`) or "fp32": recorded in every row and
    checkpoint sidecar as `train_dtype`, so a bf16-trained checkpoint is never mistaken for an fp32 one."""
    return "bf16" if cfg.amp and torch.device(device).type == "cuda" else "fp32"


def train(model, splits, cfg: TrainConfig, *, device, seed=0, desc="train", teacher=None):
    """Train `model` in place on `splits` and leave it holding the weights of the best epoch on the stop part;
    with a `teacher` model and `cfg.distill` > 0, also towards the teacher's outputs on the same (augmented) batch.

    Returns a dict of metrics: per-epoch history (train, stop part and test), the best epoch and its stop-part
    loss/accuracy (`stop_*`), `final_metrics` of the kept weights (`val_*` is the decide part), seconds, peak
    memory of one training step and parameter counts.
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    model.to(device)
    x_train, y_train = splits.x_train.to(device), splits.y_train.to(device)
    x_stop, y_stop = splits.x_stop.to(device), splits.y_stop.to(device)
    x_test, y_test = splits.x_test.to(device), splits.y_test.to(device)
    is_image = x_train.dim() == 4
    generator = torch.Generator(device=device).manual_seed(seed)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    optimizer, scheduler = make_optimizer(model, cfg, cfg.epochs * steps_per_epoch)

    amp = autocast_dtype(cfg, device) == "bf16"  # tensor cores; evaluation stays in fp32
    distill = teacher is not None and cfg.distill > 0
    if distill:
        teacher.to(device).eval().requires_grad_(False)

    def step(idx):
        x = x_train[idx]
        if cfg.augment != "none" and is_image:
            x = augment_images(x, generator, cfg.augment)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y_train[idx], label_smoothing=cfg.label_smoothing)
        if distill:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                teacher_logits = teacher(x)
            loss = (1 - cfg.distill) * loss + cfg.distill * distillation_loss(
                logits.float(), teacher_logits.float(), cfg.distill_temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        # running sums stay on the device: no host sync per step
        totals[0] += loss.detach() * len(idx)
        totals[1] += (logits.detach().argmax(1) == y_train[idx]).sum()

    peak_mem = None
    start = time.perf_counter()
    # Epoch 0 is the starting model, a candidate like any epoch: fine-tuning from a trained model (an exact
    # factorisation, trained dense weights, a zero LoRA update) can then never end below where it started on
    # the stop part. For a from-scratch run it is one evaluation of a random model, which any epoch beats.
    t0 = time.perf_counter()
    stop_loss, stop_acc, _ = evaluate(model, x_stop, y_stop)
    test_loss, test_acc, _ = evaluate(model, x_test, y_test)
    best = {"epoch": 0, "train_loss": None, "train_acc": None, "stop_loss": stop_loss, "stop_acc": stop_acc,
            "test_loss": test_loss, "test_acc": test_acc, "seconds": time.perf_counter() - t0}
    history, best_state, stale = [best], copy.deepcopy(model.state_dict()), 0
    tqdm.write(f"{desc} epoch   0: start | stop loss {stop_loss:.4f} acc {stop_acc:.4f} | "
               f"test loss {test_loss:.4f} acc {test_acc:.4f}")
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), device=device, generator=generator)
        totals = torch.zeros(2, device=device)  # loss sum, correct count of this epoch's training batches
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch}/{cfg.epochs}", leave=False, unit="step")
        for i in bar:
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            if peak_mem is None:  # the first step allocates gradients and optimizer state: measure it
                resident = weights_bytes(model)
                peak_mem = peak_memory(lambda: step(idx), device, resident)
            else:
                step(idx)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        train_loss, train_acc = (totals / len(x_train)).tolist()  # running, with dropout and augmentation
        stop_loss, stop_acc, _ = evaluate(model, x_stop, y_stop)
        test_loss, test_acc, _ = evaluate(model, x_test, y_test)
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "stop_loss": stop_loss,
                  "stop_acc": stop_acc, "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds}
        history.append(record)
        tqdm.write(f"{desc} epoch {epoch:>3}: train loss {train_loss:.4f} acc {train_acc:.4f} | "
                   f"stop loss {stop_loss:.4f} acc {stop_acc:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} "
                   f"| {seconds:.1f}s")
        if stop_acc > best["stop_acc"]:
            best, stale = record, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                tqdm.write(f"{desc}: early stop after epoch {epoch}, best on the stop part at epoch {best['epoch']}")
                break
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    return {"history": history, "best_epoch": best["epoch"], "stop_acc": best["stop_acc"],
            "stop_loss": best["stop_loss"], **final_metrics(model, splits, device),
            "train_seconds": train_seconds, "epoch_seconds": sum(h["seconds"] for h in history[1:]) / len(history[1:]),
            "peak_mem_bytes": peak_mem, "train_dtype": autocast_dtype(cfg, device),
            # weights + gradients + optimizer state, counted exactly: where LoRA saves
            "train_state_bytes": weights_bytes(model) + optimizer_state_bytes(optimizer)
            + tensor_bytes(p for p in model.parameters() if p.requires_grad),
            **param_counts(model)}
