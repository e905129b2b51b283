"""Diffuse MQAR, MQAR and passkey: structure, oracle-recoverable answers, lags, determinism, validation."""

import pytest
import torch

from sessa.models.lm import IGNORE_INDEX
from sessa.tasks import build_task
from sessa.tasks.diffuse_mqar import BOS, SEP
from sessa.tasks.tsv import read_tsv, write_task_files


def dmqar(**kw):
    opts = dict(n_train=64, n_validation=16, n_test=64, seed=1)
    opts.update(kw)
    return build_task("diffuse_mqar", **opts)


def parse_dmqar(task, ids):
    """Split an example into memory pairs, noise tokens and query pairs using the <sep> markers."""
    assert ids[0] == BOS
    s1 = ids.index(SEP)
    s2 = len(ids) - 1 - ids[::-1].index(SEP)
    st = task.stride
    mem = [(tuple(ids[i:i + task.key_len]), tuple(ids[i + task.key_len:i + st])) for i in range(1, s1, st)]
    queries = [(s2 + 1 + i, tuple(ids[s2 + 1 + i:s2 + 1 + i + task.key_len])) for i in range(0, len(ids) - s2 - 1, st)]
    return mem, ids[s1 + 1:s2], queries, s1


@pytest.mark.parametrize("kw", [{}, {"key_len": 2, "value_len": 2, "num_pairs": 4, "num_queries": 4}])
def test_diffuse_mqar_oracle_recovers_every_answer(kw):
    task = dmqar(**kw)
    prefix_wrong = 0
    for i in range(32):
        ex = task.generate("train", i)
        item = task.example("train", i)
        assert item["input_ids"].tolist() == ex.ids
        mem, noise, queries, s1 = parse_dmqar(task, ex.ids)
        assert len(mem) == task.P and len(queries) == task.Q
        table = dict(mem)
        assert len(table) == task.P and len({k[:-1] for k in table}) == task.P  # distinct prefixes
        labels = item["labels"].tolist()
        for pos, key in queries:
            answer = labels[pos + task.key_len:pos + task.stride]
            assert tuple(answer) == table[key]  # oracle lookup
            # a prefix-only reader takes the latest pattern with this prefix: often a distractor
            hits = [j for j in range(0, len(noise) - task.stride + 1, task.stride)
                    if tuple(noise[j:j + task.key_len - 1]) == key[:-1]]
            if hits:
                prefix_wrong += tuple(noise[hits[-1] + task.key_len:hits[-1] + task.stride]) != table[key]
        scored = [p for p, t in enumerate(labels) if t != IGNORE_INDEX]
        assert scored == ex.answer_positions and len(scored) == task.Q * task.value_len
    assert prefix_wrong > 0


def test_diffuse_mqar_distractors_share_prefix_with_wrong_suffix():
    task = dmqar()
    n_patterns = 0
    for i in range(16):
        ex = task.generate("train", i)
        mem, noise, _, _ = parse_dmqar(task, ex.ids)
        keys = [k for k, _ in mem]
        for j in range(0, len(noise) - task.key_len + 1, task.stride):
            d = tuple(noise[j:j + task.key_len])
            src = [k for k in keys if k[:-1] == d[:-1]]
            assert len(src) == 1 and src[0][-1] != d[-1]  # shares one key's prefix, suffix mismatched
            assert d not in keys
            n_patterns += 1
    assert n_patterns > 16


def test_diffuse_mqar_lags_are_controlled_and_test_extrapolates():
    task = dmqar(min_lag=60, max_lag=100, test_lag_factor=4)
    train_lags, test_lags = [], []
    for split, acc in (("train", train_lags), ("validation", train_lags), ("test", test_lags)):
        for i in range(task.split_size(split)):
            ex = task.generate(split, i)
            mem, _, queries, _ = parse_dmqar(task, ex.ids)
            src = {k: 1 + j * task.stride for j, (k, _) in enumerate(mem)}
            lags = [pos - src[key] for pos, key in queries]
            assert lags == ex.lags  # the recorded lag is the real source-query distance
            acc += lags
            assert len(ex.ids) <= task.max_seq_len(split)
    assert 60 <= min(train_lags) and max(train_lags) <= 100
    assert 60 <= min(test_lags) and max(test_lags) <= 400
    assert max(test_lags) > 2 * max(train_lags)  # well beyond the training lags
    assert sum(lag > 100 for lag in test_lags) > len(test_lags) / 2


def test_diffuse_mqar_determinism_and_options():
    a, b, c = dmqar(), dmqar(), dmqar(seed=2)
    assert a.generate("test", 9).ids == b.generate("test", 9).ids
    assert a.generate("test", 9).ids != c.generate("test", 9).ids
    assert a.vocab_size == 3 + 32 + 32 and a.pad_id == 0
    assert a.metric_names == ("loss", "accuracy")
    batch = a.collate([a.example("train", i) for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and int(batch["input_ids"].max()) < a.vocab_size


@pytest.mark.parametrize(
    "bad, name",
    [({"key_len": 1}, "key_len"), ({"num_queries": 9}, "num_queries"), ({"max_lag": 40}, "max_lag"),
     ({"min_lag": 20, "max_lag": 50}, "max_lag"), ({"key_vocab": 2, "key_len": 2}, "key_vocab"),
     ({"test_lag_factor": 0}, "test_lag_factor"), ({"n_train": 0}, "n_train")],
)
def test_diffuse_mqar_bad_options(bad, name):
    with pytest.raises(ValueError, match=name):
        dmqar(**bad)


def test_mqar_oracle_and_layout():
    task = build_task("mqar", n_train=32, seq_len=64, num_pairs=6, num_queries=4, seed=0)
    for i in range(32):
        ex = task.generate("train", i)
        ids = ex.ids
        assert len(ids) == 64 and ids[0] == BOS
        table = {ids[1 + 2 * j]: ids[2 + 2 * j] for j in range(6)}
        assert len(table) == 6
        labels = task.example("train", i)["labels"].tolist()
        scored = [p for p, t in enumerate(labels) if t != IGNORE_INDEX]
        assert len(scored) == 4
        for p in scored:
            assert labels[p] == table[ids[p - 1]]  # the value of the key right before
        for p, lag in zip(scored, ex.lags, strict=True):
            src = 1 + 2 * list(table).index(ids[p - 1])
            assert lag == p - 1 - src > 0
    assert task.generate("test", 3).ids == build_task("mqar", seq_len=64, num_pairs=6, num_queries=4,
                                                      n_train=32).generate("test", 3).ids
    with pytest.raises(ValueError, match="seq_len"):
        build_task("mqar", seq_len=20, num_pairs=8)
    with pytest.raises(ValueError, match="key_vocab"):
        build_task("mqar", key_vocab=4, num_pairs=8)


@pytest.mark.parametrize("distance", [0, 37, [8, 64, 200]])
def test_passkey_distance_and_oracle(distance):
    task = build_task("passkey", n_train=12, n_validation=6, n_test=6, distance=distance, passkey_len=4)
    dists = distance if isinstance(distance, list) else [distance]
    for i in range(12):
        ex = task.generate("train", i)
        ids = ex.ids
        key, query = ids.index(2), ids.index(3)
        assert query - (key + 5) == dists[i % len(dists)]  # filler tokens between needle and query
        assert ex.lags == [query - key]
        item = task.example("train", i)
        scored = (item["labels"] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert scored == list(range(query + 1, query + 5))
        assert item["labels"][scored].tolist() == ids[key + 1:key + 5]  # the hidden passkey
    with pytest.raises(ValueError, match="distance"):
        build_task("passkey", distance=-1)
    with pytest.raises(ValueError, match="distance"):
        build_task("passkey", distance=[])


def test_recall_tsv_files(tmp_path):
    task = dmqar(n_train=4, n_validation=2, n_test=2)
    written = write_task_files(task, str(tmp_path))
    assert "labels" not in written
    rows = read_tsv(written["test"])
    assert len(rows) == 2
    text, answer = rows[0]
    ex = task.generate("test", 0)
    assert text.count("?") == len(ex.answer_positions) == len(answer.split())
    assert answer.split() == [task.token_name(ex.ids[p]) for p in ex.answer_positions]
    assert torch.equal(task.example("test", 0)["input_ids"], torch.tensor(ex.ids))


def test_datasets_pickle_for_worker_processes():
    import pickle

    for name in ("symbolsoup", "diffuse_mqar", "mqar", "passkey"):
        task = build_task(name, n_train=20, n_validation=20, n_test=20)
        ds = pickle.loads(pickle.dumps(task.dataset("test")))
        assert torch.equal(ds[3]["input_ids"], task.dataset("test")[3]["input_ids"])
