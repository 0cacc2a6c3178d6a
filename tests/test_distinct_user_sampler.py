import torch

from mmgraph.data.sampling import DistinctUserSampler
from tests.helpers import tiny_dataset


def test_batches_hold_distinct_users_with_a_positive_and_an_unseen_negative():
    data = tiny_dataset(num_users=30, num_items=20)
    sampler = DistinctUserSampler(data, 8, torch.Generator().manual_seed(0))
    seen = data.user_items("train")
    train = {(u, i) for u, i in data.edge_index("train").T.tolist()}
    assert len(sampler) == data.num_interactions("train") // 8 + 1
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        users = batch.users.tolist()
        assert len(users) == 8 and len(set(users)) == 8
        assert all(seen.degree()[u] > 0 for u in users)
        assert all((u, i) in train for u, i in zip(users, batch.pos_items.tolist()))
        assert all((u, j) not in train for u, j in zip(users, batch.neg_items.tolist()))


def test_batch_larger_than_the_user_count_takes_every_active_user():
    data = tiny_dataset(num_users=5, num_items=20)
    batch = next(iter(DistinctUserSampler(data, 64)))
    assert sorted(batch.users.tolist()) == list(range(5))


def test_positives_cover_each_users_items_and_the_generator_decides_everything():
    data = tiny_dataset(num_users=3, num_items=20, per_user=6)
    sampler = DistinctUserSampler(data, 3, torch.Generator().manual_seed(1))
    pairs = {
        (u, i)
        for _ in range(20)
        for b in sampler
        for u, i in zip(b.users.tolist(), b.pos_items.tolist())
    }
    assert pairs == {(u, i) for u, i in data.edge_index("train").T.tolist()}
    a = [b.neg_items for b in DistinctUserSampler(data, 3, torch.Generator().manual_seed(4))]
    b = [b.neg_items for b in DistinctUserSampler(data, 3, torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
