"""The training loop (rotnet.loop): the lr as a pure function of position, the optimizer and AMP state round-
tripping, a non-finite loss stopping at its step, and that the model learns."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from rotnet.config import RunConfig
from rotnet.loop import (
    Engine,
    Hooks,
    LoopState,
    build_optimizer,
    fit,
    lr_at,
    make_batch,
    smallest_step,
    time_left,
    train_step,
)
from rotnet.models import build_model
from rotnet.seeds import generator


def torch_lrs(cfg: RunConfig, steps_per_epoch: int) -> list[float]:
    """The lr torch's own schedulers give at each step (StepLR stepped per epoch, cosine per step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    if cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    out = []
    for _ in range(cfg.epochs):
        for _ in range(steps_per_epoch):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if cfg.schedule == "cosine":
                sched.step()
        if cfg.schedule == "step":
            sched.step()
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        RunConfig(epochs=45, lr_step_epochs=10),  # the report's StepLR
        RunConfig(epochs=6, lr_step_epochs=4, lr=0.01, lr_gamma=0.5),
        RunConfig(epochs=5, schedule="cosine", lr=0.1),
    ],
)
def test_lr_at_agrees_with_torch_schedulers(cfg):
    steps = 7
    ours = [lr_at(cfg, e, s, steps) for e in range(cfg.epochs) for s in range(steps)]
    assert ours == pytest.approx(torch_lrs(cfg, steps), rel=1e-9, abs=1e-12)


def test_overfits_one_batch():
    """8 fixed images with random labels: ten steps reach ~100% train accuracy (the model learns)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    model = build_model("resnet18", 10)
    model.train()
    cfg = RunConfig(task="classification", lr=1e-3)
    opt = build_optimizer(cfg, list(model.parameters()), torch.device("cpu"))
    first = None
    for _ in range(10):  # 5 were enough with torch 2.14.1
        loss, logits = train_step(model, opt, x, y, "fp32")
        first = first if first is not None else loss.item()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert loss.item() < first / 10 and acc > 0.95, (first, loss.item(), acc)


def test_sgd_cosine_fp16_scaler_resume_round_trip():
    """Save mid-run (model, optimizer with momentum, scaler) and resume: the same weights as straight through."""
    from rotnet.checkpoint import load_optimizer, optimizer_to_tensors

    cfg = replace(
        RunConfig(task="classification", epochs=2, batch_size=8, channels_last=False),
        optimizer="sgd",
        lr=0.05,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        precision="fp16",  # autocast to float16 and the GradScaler run on the CPU too
    )
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)  # 2 steps an epoch
    labels = torch.randint(0, 10, (16,))

    def engine():  # a small conv net with BatchNorm: the claim is the loop's state, not the ResNet's
        torch.manual_seed(1)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
        )
        opt = build_optimizer(cfg, list(model.parameters()), torch.device("cpu"))
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)  # its scale changes every step
        return Engine(model, opt, None, scaler)

    hooks = Hooks(lambda m, e: {}, lambda s: None, log=lambda _: None)
    straight = engine()
    fit(cfg, straight, images, labels, LoopState(), hooks)

    first = engine()
    saved = {}

    class Saved(Exception):  # the first engine stops once saved: its second epoch is the resumed one's
        pass

    def save(state: LoopState) -> None:
        if state.epoch == 1:
            tensors, meta = optimizer_to_tensors(first.optimizer.state_dict())
            saved.update(
                model={k: v.clone() for k, v in first.model.state_dict().items()},
                opt=({k: v.clone() for k, v in tensors.items()}, meta),
                scaler=first.scaler.state_dict(),
                state=LoopState(state.epoch, state.step, state.sums.clone(), state.seconds, list(state.history)),
            )
            raise Saved

    with pytest.raises(Saved):
        fit(cfg, first, images, labels, LoopState(), Hooks(lambda m, e: {}, save, lambda _: None))
    resumed = engine()
    resumed.model.load_state_dict(saved["model"])
    load_optimizer(resumed.optimizer, *saved["opt"])
    resumed.scaler.load_state_dict(saved["scaler"])
    fit(cfg, resumed, images, labels, saved["state"], hooks)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()


@pytest.mark.parametrize("tty", [True, False])
def test_a_non_finite_loss_stops_the_run_at_the_same_step_with_or_without_a_terminal(monkeypatch, tty):
    """A non-finite loss stops the run at its step, with a terminal or without one."""
    import rotnet.loop
    from rotnet.errors import NonFiniteLoss

    monkeypatch.setattr(rotnet.loop, "is_tty", lambda: tty)
    monkeypatch.setattr(rotnet.loop, "SYNC_EVERY", 5)  # the flags are read every 5 steps of the epoch's 25
    steps = []
    real = rotnet.loop.train_step

    def counted(*a, **kw):
        steps.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(rotnet.loop, "train_step", counted)
    cfg = RunConfig(epochs=1, batch_size=2, lr=1e30, channels_last=False)
    model = build_model("resnet18", 4, "cifar")
    engine = Engine(model, build_optimizer(cfg, list(model.parameters()), torch.device("cpu")))
    images = torch.randint(0, 256, (50, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(NonFiniteLoss):
        fit(cfg, engine, images, torch.zeros(50, dtype=torch.long), LoopState(), Hooks(lambda m, e: {}, lambda s: None))
    assert len(steps) == 5  # the first read of the flags, never the epoch's last step


def test_four_rotations_per_image_put_every_rotation_in_the_batch():
    cfg = RunConfig(rotations_per_image=4)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    inputs, targets = make_batch(cfg, images, torch.zeros(3, dtype=torch.long), generator("cpu", "augment", 0))
    assert inputs.shape == (12, 3, 32, 32) and targets.tolist() == [0, 1, 2, 3] * 3
    for i in range(3):  # the same crop/flip, rotated four ways
        for k in range(4):
            torch.testing.assert_close(inputs[4 * i + k], torch.rot90(inputs[4 * i], k, dims=(1, 2)))


@given(
    n=st.integers(1, 600),
    batch=st.integers(1, 130),
    task=st.sampled_from(["rotation", "classification"]),
    per_image=st.sampled_from([1, 4]),
    ranks=st.integers(1, 4),
)
def test_smallest_step_is_the_fewest_samples_any_ranks_step_holds(n, batch, task, per_image, ranks):
    """What refuse_untrainable checks, against the epoch's own slicing and `shard`: every step of train_one_epoch,
    each rank's part."""
    from rotnet.distributed import World, shard

    cfg = RunConfig(task=task, batch_size=batch, rotations_per_image=per_image)
    order, each = torch.arange(n), per_image if task == "rotation" else 1
    steps = [order[s * batch : (s + 1) * batch] for s in range(-(-n // batch))]
    held = [len(shard(torch.arange(len(idx) * each), World(r, ranks))) for idx in steps for r in range(ranks)]
    assert smallest_step(cfg, n, ranks) == min(held)


# Recorded epoch seconds (this life's last) -> the epochs to go -> the time left an epoch line says. The loop took the
# mean of this process's epochs: one epoch spent stopped (a laptop's lid closed, SIGSTOP) made it the whole estimate
# after a resume ("about 32.9 h left" for a ResNet50 run with 6.5 h left), and a resumed run forgot its earlier ones.
LEFT = [
    ("steady", [100.0] * 6, 10, 1000.0),
    ("one epoch spent stopped, just after a resume", [100.0] * 5 + [1800.0], 10, 1000.0),
    ("the first epoch (warm-up) alone", [130.0], 4, 520.0),
    ("faster now: the last five epochs count", [300.0] * 10 + [100.0] * 5, 2, 200.0),
    ("a record without seconds", [{"epoch": 1}], 3, None),
]


@pytest.mark.parametrize("what, seconds, to_go, left", LEFT, ids=[c[0] for c in LEFT])
def test_the_time_left_is_the_recent_typical_epoch_times_the_epochs_to_go(what, seconds, to_go, left):
    history = [s if isinstance(s, dict) else {"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)]
    assert time_left(history, to_go) == left
