import pytest
import torch

from mmgraph.data import InteractionDataset
from mmgraph.data.sampling import BPRSampler, NegativeSampler, negative_candidates
from mmgraph.errors import ConfigError, DataError
from mmgraph.models import MMSSL
from mmgraph.train import TrainConfig
from tests.helpers import tiny_dataset


def test_negatives_are_never_training_items_and_cover_the_rest():
    data = tiny_dataset(num_users=40, num_items=12, per_user=8)
    seen = data.user_items("train")
    sampler = NegativeSampler(seen, data.num_items)
    users = torch.arange(40).repeat_interleave(500)
    negatives = sampler.sample(users, torch.Generator().manual_seed(0))
    train_pairs = set(map(tuple, data.edge_index("train").T.tolist()))
    drawn = set(zip(users.tolist(), negatives.tolist()))
    assert not drawn & train_pairs
    # Every unseen (user, item) pair is reachable: 500 draws over 6 candidates each.
    all_unseen = {(u, i) for u in range(40) for i in range(12)} - train_pairs
    assert drawn == all_unseen


def test_negatives_are_uniform_over_unseen_items():
    data = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 2]),
        num_items=6,
    )  # fmt: skip
    sampler = NegativeSampler(data.user_items("train"), 6)
    draws = sampler.sample(torch.zeros(60000, dtype=torch.long), torch.Generator().manual_seed(1))
    counts = torch.bincount(draws, minlength=6).float() / draws.numel()
    assert counts[:2].sum() == 0
    assert torch.allclose(counts[2:], torch.full((4,), 0.25), atol=0.01)


def test_user_who_saw_everything_is_a_clear_error():
    data = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 2]),
    )  # fmt: skip
    with pytest.raises(DataError, match="user 0 has interacted with all 2 items"):
        NegativeSampler(data.user_items("train"), 2)


def test_bpr_sampler_epoch_covers_every_training_interaction_once():
    data = tiny_dataset()
    sampler = BPRSampler(data, batch_size=7, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-data.num_interactions() // 7)
    pairs = torch.cat([torch.stack([b.users, b.pos_items]) for b in batches], dim=1)
    assert sorted(map(tuple, pairs.T.tolist())) == sorted(
        map(tuple, data.edge_index("train").T.tolist())
    )


def test_bpr_sampler_is_deterministic_given_the_generator():
    data = tiny_dataset()

    def epoch(seed):
        sampler = BPRSampler(data, 16, torch.Generator().manual_seed(seed))
        return torch.cat([torch.cat([b.users, b.pos_items, b.neg_items]) for b in sampler])

    assert torch.equal(epoch(5), epoch(5))
    assert not torch.equal(epoch(5), epoch(6))


def test_train_pool_draws_only_items_with_training_interactions_uniformly():
    # Items 4 and 5 occur only in valid/test: MMRec's pool never draws them.
    data = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 1, 1, 1, 0]), torch.tensor([0, 1, 2, 3, 4, 5]),
        torch.tensor([0, 0, 0, 0, 1, 2]), num_items=6,
    )  # fmt: skip
    pool = negative_candidates(data, "train")
    assert pool.tolist() == [0, 1, 2, 3]
    sampler = NegativeSampler(data.user_items("train"), 6, pool)
    draws = sampler.sample(torch.zeros(40000, dtype=torch.long), torch.Generator().manual_seed(2))
    counts = torch.bincount(draws, minlength=6).float() / draws.numel()
    assert counts[[0, 1, 4, 5]].sum() == 0  # seen by user 0, or outside the pool
    assert torch.allclose(counts[2:4], torch.full((2,), 0.5), atol=0.01)
    assert negative_candidates(data, "all") is None


def test_all_pool_draws_exactly_as_before():
    data = tiny_dataset()
    sampler = BPRSampler(data, 16, torch.Generator().manual_seed(3), negative_pool="all")
    plain = NegativeSampler(data.user_items("train"), data.num_items)
    batch = next(iter(sampler))
    # The same generator stream: the epoch's order, then the batch's negatives.
    generator = torch.Generator().manual_seed(3)
    order = torch.randperm(data.num_interactions(), generator=generator)
    users = data.edge_index("train")[0][order[:16]]
    assert torch.equal(batch.neg_items, plain.sample(users, generator))


def test_user_who_saw_the_whole_pool_and_unknown_pools_are_clear_errors():
    data = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 2]), torch.tensor([0, 0, 0, 1]),
        num_items=3,
    )  # fmt: skip
    with pytest.raises(DataError, match="user 0 has interacted with all 2 candidate negative"):
        BPRSampler(data, 4, negative_pool="train")
    BPRSampler(data, 4, negative_pool="all")  # item 2 is a valid negative for user 0 there
    with pytest.raises(ValueError, match="negative_pool must be one of train, all"):
        negative_candidates(data, "popular")
    with pytest.raises(ConfigError, match="negative_pool must be one of train, all"):
        TrainConfig(negative_pool="popular")


def test_mmssl_reference_draws_negatives_from_all_items():
    features = {"image": torch.randn(6, 4)}
    data = InteractionDataset.from_interactions(
        torch.tensor([0, 0, 1, 1, 1, 0]), torch.tensor([0, 1, 2, 3, 4, 5]),
        torch.tensor([0, 0, 0, 0, 1, 2]), num_items=6, features=features,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    for reference, expected in ((False, 4), (True, 6)):
        model = MMSSL.from_dataset(data, embedding_dim=4, reference=reference)
        sampler = model.make_sampler(data, 2, generator, torch.device("cpu"), "train")
        pool = sampler.negatives.candidates
        assert (6 if pool is None else pool.numel()) == expected
