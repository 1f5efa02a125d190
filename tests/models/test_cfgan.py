"""CFGAN as the authors' code defines it (Chae et al., CIKM 2018): each fix of issue #21 has a check here."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from genrec_core.data.interactions import Interactions, Vocabulary
from genrec_core.models.base import FitOptions, Validation
from genrec_core.models.cfgan import CFGANConfig
from genrec_core.models.cfgan.model import (
    CFGAN,
    CFGANNet,
    discriminator_loss,
    generator_loss,
    l2_penalty,
    sample_unseen,
)
from genrec_core.models.popularity.model import Popularity
from genrec_core.ranking.metrics import evaluate
from tests.model_contract import OPTIONS
from tests.models.test_models import SMALL_CFGAN


def test_losses_match_the_formula():
    """D: -log D(real) - log(1 - D(fake)); G: -log D(fake) (non-saturating) + alpha * sum over ZR items of G^2."""
    real, fake = torch.tensor([0.4, -1.2]), torch.tensor([-0.3, 2.0])
    generated = torch.tensor([[0.2, 1.9, -0.5], [0.1, 0.3, 0.7]])
    zr = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    sig = torch.sigmoid
    d_expected = (-torch.log(sig(real)) - torch.log(1 - sig(fake))).mean()
    g_expected = (-torch.log(sig(fake)) + 0.5 * torch.tensor([0.2**2 + 0.5**2, 0.3**2])).mean()
    torch.testing.assert_close(discriminator_loss(real, fake), d_expected)
    torch.testing.assert_close(generator_loss(fake, generated, zr, 0.5), g_expected)


def test_generator_gradient_survives_a_confident_discriminator():
    """The saturating log(1 - D(G)) has a gradient near 0 when D calls G's vector fake; -log D(G) does not."""
    fake = torch.tensor([-8.0], requires_grad=True)
    generator_loss(fake, torch.zeros(1, 2), torch.zeros(1, 2), 0.0).backward()
    assert fake.grad is not None and fake.grad.abs().item() > 0.99


def test_generator_output_is_linear():
    """No sigmoid on G's output: it reaches past 1 and below 0 (ZR and D see raw values, as in the reference)."""
    net = CFGANNet(6, CFGANConfig(generator_hidden=4, discriminator_hidden=3, linear_expert=False))
    assert isinstance(net.generator[-1], nn.Linear)
    with torch.no_grad():
        net.generator[-1].weight.zero_()
        net.generator[-1].bias.copy_(torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.5, 3.0]))
    out = net.generate(torch.ones(2, 6))
    torch.testing.assert_close(out, torch.tensor([[-2.0, -0.5, 0.0, 0.5, 1.5, 3.0]] * 2))


def test_initial_weights_are_glorot_uniform_and_biases_small():
    net = CFGANNet(400, CFGANConfig(generator_hidden=300, discriminator_hidden=250, linear_expert=False))
    first = net.generator[0]
    bound = np.sqrt(6.0 / (400 + 300))
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.95 * bound
    joint = np.sqrt(6.0 / (2 * 400 + 250))  # D's first layer over the concatenated (history, vector)
    for block in (net.condition, net.observed):
        assert block.weight.abs().max() <= joint and block.weight.abs().max() > 0.95 * joint
    for module in [*net.generator, net.observed, *net.discriminator_head]:
        if isinstance(module, nn.Linear):
            assert module.bias.abs().max() <= 0.01


def test_each_objective_carries_its_own_l2_term():
    """L2 x sum of squares / 2 of G's parameters in G's loss, of D's in D's, and nothing of the other's."""
    torch.manual_seed(0)
    net = CFGANNet(8, CFGANConfig(generator_hidden=5, discriminator_hidden=4, linear_expert=False))
    history = (torch.rand(3, 8) < 0.4).float()
    pm, zr = 1 - history, 1 - history
    squares = {
        name: sum(float(p.detach().pow(2).sum()) for p in part) / 2
        for name, part in (("g", net.generator.parameters()), ("d", net.discriminator_parameters()))
    }
    assert l2_penalty(net.generator.parameters()).item() == torch.tensor(squares["g"]).item()
    torch.manual_seed(1)
    d_plain = net.discriminator_objective(history, pm, 0.0)[0]
    d_reg = net.discriminator_objective(history, pm, 0.25)[0]
    g_plain = net.generator_objective(history, pm, zr, 0.1, 0.0)[0]
    g_reg = net.generator_objective(history, pm, zr, 0.1, 0.25)[0]
    assert abs((d_reg - d_plain).item() - 0.25 * squares["d"]) < 1e-4
    assert abs((g_reg - g_plain).item() - 0.25 * squares["g"]) < 1e-4


def test_samples_hold_exactly_the_share_of_unseen_items():
    rng = np.random.default_rng(0)
    history = (rng.random((50, 37)) < 0.3).astype(np.float32)
    history[0] = 1.0  # a user who has everything: nothing to sample
    users = np.arange(50)
    for ratio in (0.0, 0.25, 0.7, 0.9, 1.0):
        sample = sample_unseen(history, users, ratio, salt=3)
        unseen = (history == 0).sum(axis=1)
        np.testing.assert_array_equal(sample.sum(axis=1), np.floor(ratio * unseen))
        assert not (sample * history).any(), "a purchased item was sampled"


def test_a_users_sample_depends_on_the_salt_not_on_the_batch():
    rng = np.random.default_rng(1)
    history = (rng.random((40, 60)) < 0.2).astype(np.float32)
    whole = sample_unseen(history, np.arange(40), 0.5, salt=11)
    part = sample_unseen(history[[7, 3]], np.array([7, 3]), 0.5, salt=11)
    np.testing.assert_array_equal(part, whole[[7, 3]])
    other_epoch = sample_unseen(history, np.arange(40), 0.5, salt=12)
    assert (other_epoch != whole).any(axis=1).mean() > 0.9
    # every unseen item is drawn about equally often over many epochs (no item is favoured)
    counts = sum(sample_unseen(history[:1], np.array([0]), 0.5, salt=s) for s in range(400))[0]
    unseen = history[0] == 0
    assert np.abs(counts[unseen] / 400 - 0.5).max() < 0.12


def test_each_epoch_runs_discriminator_passes_then_generator_passes(monkeypatch):
    """step_D passes of D in batches of batchSize_D, then step_G passes of G in batches of batchSize_G."""
    data = _skewed_blocks()
    calls: list[tuple[str, int]] = []
    for which in ("discriminator", "generator"):
        real = getattr(CFGAN, f"_{which}_update")

        def counting(self, x_all, users, optimizer, _which=which, _real=real):
            calls.append((_which, len(users)))
            return _real(self, x_all, users, optimizer)

        monkeypatch.setattr(CFGAN, f"_{which}_update", counting)
    schedule = {"discriminator_batch_size": 32, "generator_batch_size": 16, "discriminator_steps": 2}
    CFGAN(CFGANConfig(**{**SMALL_CFGAN, **schedule, "generator_steps": 3, "epochs": 1})).fit(data, OPTIONS)
    n = data.n_users  # 90 users: 3 batches of D (32, 32, 26) and 6 of G (5 x 16, 10)
    d_batches = [32, 32, n - 64]
    g_batches = [16] * 5 + [n - 80]
    assert calls == [("discriminator", b) for b in d_batches * 2] + [("generator", b) for b in g_batches * 3]


def test_forward_passes_stay_in_float32():
    model = CFGAN(CFGANConfig(**SMALL_CFGAN))
    with model.autocast():
        out = torch.nn.Linear(4, 2)(torch.ones(1, 4))
    assert out.dtype == torch.float32


def test_min_epochs_holds_off_early_stopping():
    data = _skewed_blocks()
    no_targets = sp.csr_matrix(data.matrix.shape, dtype=np.float32)  # the score never improves after epoch 1
    validation = Validation(data.matrix, no_targets, k=5, patience=2)
    options = FitOptions(seed=1, threads=2, validation=validation)
    early = CFGAN(CFGANConfig(**{**SMALL_CFGAN, "epochs": 30, "min_epochs": 0})).fit(data, options)
    held = CFGAN(CFGANConfig(**{**SMALL_CFGAN, "epochs": 30, "min_epochs": 12})).fit(data, options)
    assert len(early.training_log) == 3
    assert len(held.training_log) == 12


def _skewed_blocks(seed: int = 0) -> Interactions:
    """Two taste groups of unequal size: 60 users on items 0-19, 30 users on items 20-39, 8 items each.

    Within a block, item j's popularity falls with j, so popularity ranks block 0's items first for everyone.
    """
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for block, users in ((0, range(60)), (1, range(60, 90))):
        weights = 1.0 / np.arange(1, 21) ** 0.7
        for u in users:
            chosen = rng.choice(20, size=8, replace=False, p=weights / weights.sum()) + 20 * block
            rows += [u] * 8
            cols += chosen.tolist()
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(90, 40))
    return Interactions(
        matrix,
        Vocabulary(np.array([f"u{i}" for i in range(90)], dtype=object)),
        Vocabulary(np.array([f"i{i}" for i in range(40)], dtype=object)),
    )


def _hold_out(matrix: sp.csr_matrix, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two items of each user held out as the targets."""
    rng = np.random.default_rng(seed)
    dense = matrix.toarray()
    targets = np.zeros_like(dense)
    for u in range(dense.shape[0]):
        held = rng.choice(np.flatnonzero(dense[u]), size=2, replace=False)
        dense[u, held], targets[u, held] = 0, 1
    return sp.csr_matrix(dense), sp.csr_matrix(targets)


@pytest.mark.parametrize(("mode", "epochs"), [("user", 120), ("item", 200)])  # item mode: 40 rows, 2 batches
def test_known_answer_beats_popularity_and_the_adversarial_game_moves(mode, epochs):
    """On two taste groups of unequal size, popularity sends the small group the big group's items; CFGAN
    learns each group's items. Its lists beat popularity's clearly, and D's accuracy and G's adversarial
    loss change over the fit (both are logged per epoch)."""
    data = _skewed_blocks()
    history, targets = _hold_out(data.matrix, seed=2)
    train = Interactions(history, data.users, data.items)
    cfgan = CFGAN(CFGANConfig(**{**SMALL_CFGAN, "mode": mode, "epochs": epochs})).fit(train, OPTIONS)
    popularity = Popularity().fit(train, OPTIONS)
    ours = evaluate(cfgan, history, targets, k=5)["recall@5"]  # (evaluate passes each row's user index)
    theirs = evaluate(popularity, history, targets, k=5)["recall@5"]
    assert ours > 1.2 * theirs, (ours, theirs)
    small_group = targets.multiply((np.arange(90) >= 60)[:, None]).tocsr()  # popularity lists none of their items
    assert evaluate(popularity, history, small_group, k=5)["recall@5"] == 0.0
    assert evaluate(cfgan, history, small_group, k=5)["recall@5"] > 0.35
    accuracy = np.array([e["discriminator_accuracy"] for e in cfgan.training_log])
    adversarial = np.array([e["generator_adversarial_loss"] for e in cfgan.training_log])
    assert accuracy.min() >= 0.0 and accuracy.max() <= 1.0
    assert accuracy.max() - accuracy.min() > 0.1
    assert adversarial.max() - adversarial.min() > 0.1


def test_an_artifact_of_the_old_cfgan_is_refused_with_the_way_out():
    model = CFGAN(CFGANConfig(**{**SMALL_CFGAN, "epochs": 1})).fit(_skewed_blocks(), OPTIONS)
    state = {k: v for k, v in model.state().items() if not k.startswith(("condition", "observed"))}
    state["discriminator.0.weight"] = torch.zeros(16, 80)  # the 0.3 layout: one layer over [history, vector]
    with pytest.raises(ValueError, match="retrain"):
        CFGAN().load_state(model.config_dict(), model.n_items, state)
