"""The training loop: it learns, keeps the weights of the best epoch on validation's stop part, and never lets the
decide part or the test split choose anything."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lowrank_bench.models.methods import factorize
from lowrank_bench.models.mlp import MLP, MLPConfig
from lowrank_bench.training.config import TrainConfig
from lowrank_bench.core.io import read_json
from lowrank_bench.training.data import Splits
from lowrank_bench.training.train import augment_images, confusion_matrix, distillation_loss, evaluate, train


def blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 4, 4, generator=g) * 0.3
    x[torch.arange(n), 0, y, y] += 2.0  # class c lights pixel (c, c)
    return x, y


def splits(shuffled=()):
    """Blobs in four parts; the labels of the parts named in `shuffled` are permuted (noise a model cannot fit)."""
    parts = {"train": blobs(300, 0), "stop": blobs(90, 1), "decide": blobs(90, 3), "test": blobs(90, 2)}
    for name in shuffled:
        x, y = parts[name]
        parts[name] = x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))]
    index = {name: np.arange(len(y)) for name, (_, y) in parts.items()}
    return Splits("blobs", *(t for part in parts.values() for t in part), ["a", "b", "c"], index)


def fresh_model():
    torch.manual_seed(0)
    return MLP(MLPConfig(in_features=16, hidden=[16], n_classes=3, dropout=0.0))


CFG = TrainConfig(epochs=6, batch_size=32, lr=1e-2, patience=2)


def test_learns_and_records_every_epoch():
    model = fresh_model()
    m = train(model, splits(), CFG, device="cpu", seed=0)
    assert m["test_acc"] > 0.9 and m["val_acc"] > 0.9
    assert [h["epoch"] for h in m["history"]] == list(range(len(m["history"])))  # epoch 0: the start
    assert set(m["history"][1]) >= {"train_loss", "train_acc", "stop_loss", "stop_acc", "test_loss", "test_acc",
                                    "seconds"}
    assert sum(map(sum, m["confusion"])) == 90 and m["peak_mem_bytes"] > 0
    assert m["params_trainable"] == m["params_total"] == 16 * 16 + 16 + 3 * 16 + 3


@pytest.mark.parametrize("part", ["test", "decide"])
def test_neither_test_nor_decide_part_chooses_anything(part):
    a, b = fresh_model(), fresh_model()
    ma = train(a, splits(), CFG, device="cpu", seed=0)
    mb = train(b, splits(shuffled=[part]), CFG, device="cpu", seed=0)
    assert ma["best_epoch"] == mb["best_epoch"] and len(ma["history"]) == len(mb["history"])
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_keeps_best_stop_part_weights_and_stops_early():
    model = fresh_model()
    cfg = dataclasses.replace(CFG, epochs=30, lr=0.5, patience=1)  # too high a rate: the stop part soon stalls
    m = train(model, splits(), cfg, device="cpu", seed=0)
    best = max(h["stop_acc"] for h in m["history"])
    assert m["stop_acc"] == best and len(m["history"]) < 30
    assert m["history"][m["best_epoch"]]["stop_acc"] == best


def test_val_acc_is_the_decide_part_of_the_kept_weights_not_the_early_stopping_best():
    """With the decide part's labels shuffled the kept model is as good as ever on the stop part and at chance on the
    decide part: `val_acc` must say the latter, example by example, and never the stopping best."""
    data = splits(shuffled=["decide"])
    model = fresh_model()
    m = train(model, data, CFG, device="cpu", seed=0)
    _, acc, preds = evaluate(model, data.x_decide, data.y_decide)
    assert m["val_acc"] == acc and m["stop_acc"] > 0.9 and m["val_acc"] < 0.6
    assert np.array_equal(m["outcomes"]["val"], (preds == data.y_decide).numpy())
    assert np.array_equal(m["outcomes"]["test"], (evaluate(model, data.x_test, data.y_test)[2] == data.y_test).numpy())
    assert (m["outcomes"]["val_split"], m["outcomes"]["test_split"]) == (data.split_id("decide"), data.split_id("test"))


def test_fine_tuning_never_ends_below_its_start():
    """A retrain of an exact (full-rank) factorisation, at a rate that wrecks it, keeps the start: epoch 0."""
    data = splits()
    g = torch.Generator().manual_seed(3)
    for name in ("x_train", "x_stop", "x_test"):  # noisy blobs: the start is good, not perfect, and can get worse
        setattr(data, name, getattr(data, name) + torch.randn(getattr(data, name).shape, generator=g))
    dense = fresh_model()
    train(dense, data, CFG, device="cpu", seed=0)
    exact = factorize(dense, 16, targets=["hidden.0"])  # full rank: the same function as dense
    start = {k: v.clone() for k, v in exact.state_dict().items()}
    start_stop = evaluate(exact, data.x_stop, data.y_stop)[1]
    m = train(exact, data, dataclasses.replace(CFG, epochs=3, lr=1.0, patience=3), device="cpu", seed=0)
    assert m["history"][0]["epoch"] == 0 and m["history"][0]["stop_acc"] == start_stop  # epoch 0 is the start
    assert max(h["stop_acc"] for h in m["history"][1:]) < start_stop  # every epoch is worse ...
    assert m["best_epoch"] == 0 and m["stop_acc"] == start_stop  # ... so the start is kept
    assert all(torch.equal(v, start[k]) for k, v in exact.state_dict().items())


def test_frozen_parameters_stay_bitwise_unchanged():
    model = fresh_model()
    frozen = model.hidden[0].weight.detach().clone()
    model.hidden[0].weight.requires_grad_(False)
    m = train(model, splits(), dataclasses.replace(CFG, epochs=2), device="cpu", seed=0)
    assert torch.equal(model.hidden[0].weight, frozen)
    assert m["params_trainable"] == m["params_total"] - 16 * 16


def test_augmentation_keeps_shape_and_range():
    x = torch.rand(8, 1, 32, 32)
    out = augment_images(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_flip_crop_is_a_mirror_and_a_whole_pixel_shift():
    """Each image comes out as itself or its mirror image, moved by whole pixels (at most 2), zeros coming in."""
    x = torch.rand(16, 1, 12, 12)
    out = augment_images(x, torch.Generator().manual_seed(0), "flip_crop")

    def shifted(img, dy, dx):
        padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
        return padded[..., 2 - dy:14 - dy, 2 - dx:14 - dx]

    found = []
    for img, got in zip(x, out):
        found.append([(flip, dy, dx) for flip in (False, True) for dy in range(-2, 3) for dx in range(-2, 3)
                      if torch.allclose(shifted(img.flip(-1) if flip else img, dy, dx), got, atol=1e-5)])
    assert all(len(f) == 1 for f in found), found
    assert {f[0][0] for f in found} == {False, True}  # both mirrored and plain images occur


def test_distillation_loss_is_the_scaled_kl_divergence():
    student, teacher = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    T = 3.0
    p = np.exp(teacher.numpy() / T) / np.exp(teacher.numpy() / T).sum(1, keepdims=True)
    q = np.exp(student.numpy() / T) / np.exp(student.numpy() / T).sum(1, keepdims=True)
    expected = T ** 2 * (p * np.log(p / q)).sum(1).mean()
    assert np.isclose(distillation_loss(student, teacher, T).item(), expected)
    assert distillation_loss(teacher, teacher, T).item() == pytest.approx(0, abs=1e-12)


def test_distillation_pulls_the_student_towards_the_teacher():
    """With all weight on the teacher, a student trained on shuffled labels ends up agreeing with the teacher; on
    the same shuffled labels alone it does not."""
    teacher = fresh_model()
    train(teacher, splits(), CFG, device="cpu", seed=0)
    noise = splits()
    noise.y_train = noise.y_train[torch.randperm(len(noise.y_train), generator=torch.Generator().manual_seed(0))]

    def agreement(distill):
        torch.manual_seed(1)
        student = MLP(MLPConfig(in_features=16, hidden=[16], n_classes=3, dropout=0.0))
        cfg = dataclasses.replace(CFG, distill=distill, patience=CFG.epochs)
        train(student, noise, cfg, device="cpu", seed=0, teacher=teacher)
        with torch.no_grad():
            return (student.eval()(noise.x_stop).argmax(1) == teacher.eval()(noise.x_stop).argmax(1)).float().mean()

    assert agreement(1.0) > 0.95 and agreement(0.0) < 0.8


def test_confusion_matrix_counts():
    y, p = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0])
    assert confusion_matrix(y, p, 3) == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_training_dtype_is_recorded_in_the_row_and_the_sidecar(tmp_path):
    """bf16 autocast only on CUDA with amp; whichever it was is written into the summary row and the checkpoint
    sidecar, so a bf16-trained checkpoint never passes for an fp32 one."""
    from lowrank_bench.training.checkpoint import paths
    from lowrank_bench.training.config import Profile
    from lowrank_bench.training.jobs import Job
    from lowrank_bench.training.studies.common import row, save_run
    from lowrank_bench.training.train import autocast_dtype
    assert autocast_dtype(CFG, "cuda") == "bf16"
    assert autocast_dtype(dataclasses.replace(CFG, amp=False), "cuda") == autocast_dtype(CFG, "cpu") == "fp32"
    model = fresh_model()
    m = train(model, splits(), dataclasses.replace(CFG, epochs=1), device="cpu", seed=0)
    assert m["train_dtype"] == "fp32"
    sample = splits().x_test[:1]
    dense = Job("svd", "dense", None, None, 0, (), "id0")
    assert row(dense, model, m, sample, "svd/dense")["train_dtype"] == "fp32"
    pretrained = Job("lora", "pretrained", None, None, 0, (), "id1")
    assert row(pretrained, model, {"val_acc": 0.5, "test_acc": 0.5}, sample, "svd/dense")[
        "train_dtype"] is None  # not trained in this study
    bf16 = {**m, "train_dtype": "bf16"}  # as a CUDA run returns it
    rel = save_run(tmp_path, dense, model, bf16, Profile(), "hoda", ["a", "b", "c"])
    assert read_json(paths(tmp_path / rel)[1])["train_dtype"] == "bf16"


def test_the_baselines_augmentation_is_chosen_on_the_stop_part(monkeypatch):
    """Study 1 trains its baseline with and without augmentation and keeps one: by the stop part, never by the
    decide part that then judges it (here the two disagree)."""
    from lowrank_bench.training.config import Profile
    from lowrank_bench.training.studies import svd
    scores = {"none": {"stop_acc": 0.90, "val_acc": 0.50, "test_acc": 0.50},
              "affine": {"stop_acc": 0.80, "val_acc": 0.99, "test_acc": 0.99}}
    monkeypatch.setattr(svd, "train", lambda model, splits, cfg, **kw: dict(scores[cfg.augment]))
    profile = Profile()
    profile.svd.model = MLPConfig(in_features=16, hidden=[8], n_classes=3)
    _, metrics, augment, ablation = svd.train_baseline(profile, SimpleNamespace(mean=0.0, std=1.0), "cpu", 0)
    assert augment == "none" and metrics == scores["none"] and ablation["affine"]["val_acc"] == 0.99
