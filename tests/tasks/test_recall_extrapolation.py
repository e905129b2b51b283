"""Length extrapolation in the recall tasks: test-only options (passkey test_distance, mqar test_seq_len,
diffuse_mqar test_lag_factor), unchanged defaults, per-query lags, max_seq_len / longest_lag bounds."""

import hashlib
import json
import pickle

import pytest

from sessa.tasks import build_task
from sessa.tasks.diffuse_mqar import SEP

SPLITS = ("train", "validation", "test")

# sha256 over the first 20 examples of each split (generate() and example() output), taken from the
# generators as they were before the test-only options existed: the defaults must keep producing them.
BEFORE = {
    ("mqar", '{}'): ("38c93432dc3d349e83d77b58456018523be7d373f0c8f814c16a5645dd2f9eac",
                     "48f96e7885b90e43ab58ceb4d307c4021070931c87f6d5d3d91fd86f38f45805",
                     "de384c5adc955cdd91f5463eed4f0d83cd293875b849f83d9bc4b3da3acee4f2"),
    ("mqar", '{"num_pairs": 4, "num_queries": 2, "seed": 3, "seq_len": 64}'): (
        "b4ef4578784197b08c3e264beb57e57d8ab7775ec3b39f57450b3f42cf72ec82",
        "3f6629eef9442df11ac00981a91b4405b842d43d0277df2d96d66c928b29f99a",
        "718c8c6f3f196857db235f07eda1b71a40773a911aefaee7ffc5224ebbd1c19e"),
    ("passkey", '{}'): ("1dc7dc7c8a0b5f015d154035f3fdd016a26eb29b43ffdce96bb0857cdeedea22",
                        "5a0d83b3045fbc65825834b64319eaad08dacb16499a018ce2ab598fd0e593f1",
                        "34e5ff761d27ae50000d6d33bf3e97b623e8ba87aba15892f341a94ab74885a7"),
    ("passkey", '{"distance": [0, 7, 64], "seed": 2}'): (
        "4ed314a40581b3198277a4511eebd5f4d0ba1187fd7d3ec46f9b94ceb416f9c5",
        "1db426c2f9c53d7d507929766a7cab921c3df199569af8dc0f68d9df727b4a0b",
        "70f0d916624aa6ec83cea20dcad5fc74209561df328dfbb14dc50062b8e23155"),
    ("diffuse_mqar", '{}'): ("aa9a162a2e89c1f0ca99bed92174ed16dea51e1046e3235b849feaa937c51fb4",
                             "839ef1290e1274543eae65b5725f8461adf267fd34dcb276ab94227f6a25e47d",
                             "28179f81101add512f081e79153d615ab0c27ff42f2a193239290894587adde9"),
    ("diffuse_mqar", '{"seed": 1, "test_lag_factor": 8}'): (
        "2e058f932a9d3092430b5ff4e61cc6144dc68ad4b180e6e631ae62141548fd04",
        "0a60d4a148d85c407c128adae27428de1a15010072728d7d178ef2dc45ae8c41",
        "125e965a20de454347db599e45b12ad5aeb7b7320247a4006a3d479116d7511d"),
}


def digest(task, split: str, n: int = 20) -> str:
    h = hashlib.sha256()
    for i in range(n):
        ex = task.generate(split, i)
        h.update(json.dumps([ex.ids, ex.answer_positions, ex.lags]).encode())
        item = task.example(split, i)
        h.update(json.dumps([item["input_ids"].tolist(), item["labels"].tolist()]).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name, opts", sorted(BEFORE))
def test_defaults_generate_the_same_examples_as_before(name, opts):
    kw = json.loads(opts)
    want = BEFORE[(name, opts)]
    assert tuple(digest(build_task(name, **kw), s) for s in SPLITS) == want
    # the new options left at None (or equal to the training value) change nothing either
    same = {"mqar": {"test_seq_len": kw.get("seq_len", 128)}, "passkey": {"test_distance": kw.get("distance", 128)},
            "diffuse_mqar": {}}[name]
    for extra in ({k: None for k in same}, same):
        if extra:
            assert tuple(digest(build_task(name, **kw, **extra), s) for s in SPLITS) == want


def true_lags(task, ex) -> list[int]:
    """Each query's lag recomputed from the tokens: query key position - memory key position."""
    ids = ex.ids
    if task.name == "passkey":
        return [ids.index(3) - ids.index(2)]  # <query> - <key>
    if task.name == "mqar":
        memory = [ids[1 + 2 * j] for j in range(task.P)]
        return [p - 1 - (1 + 2 * memory.index(ids[p - 1])) for p in ex.answer_positions]
    st, kl = task.stride, task.key_len
    assert ids[1 + task.P * st] == SEP
    memory = [tuple(ids[1 + j * st:1 + j * st + kl]) for j in range(task.P)]
    firsts = ex.answer_positions[::task.value_len]
    return [p - kl - (1 + memory.index(tuple(ids[p - kl:p])) * st) for p in firsts]


def check_split_lags(task, split: str, n: int) -> list[int]:
    """Lags of the first n examples of `split`, after checking each against the tokens and the bounds."""
    lags = []
    for i in range(n):
        ex = task.generate(split, i)
        # what accuracy-vs-lag binning relies on: lags per query, answer tokens a whole multiple of them
        assert ex.lags and len(ex.answer_positions) % len(ex.lags) == 0
        assert ex.lags == true_lags(task, ex)
        assert len(ex.ids) <= task.max_seq_len(split)
        assert max(ex.lags) <= task.longest_lag(split)
        lags += ex.lags
    return lags


# Train lags as in the defaults; test lags out to >= 8x the longest training lag. NO_EXTRAPOLATION: the
# option's value that makes the test split like validation.
STUDY = [("mqar", {"test_seq_len": 1024}, 200),
         ("passkey", {"test_distance": [134 * k - 6 for k in range(1, 9)]}, 64),
         ("diffuse_mqar", {"test_lag_factor": 8}, 1000)]
NO_EXTRAPOLATION = {"mqar": {}, "passkey": {}, "diffuse_mqar": {"test_lag_factor": 1}}


@pytest.mark.parametrize("name, extra, n", STUDY)
def test_test_split_reaches_8x_the_longest_training_lag(name, extra, n):
    task = build_task(name, n_train=n, n_validation=n, n_test=n, **extra)
    base = build_task(name, n_train=n, n_validation=n, n_test=n, **NO_EXTRAPOLATION[name])
    train = check_split_lags(task, "train", n)
    valid = check_split_lags(task, "validation", n)
    test = check_split_lags(task, "test", n)
    assert task.longest_lag("validation") == task.longest_lag("train") == base.longest_lag("test")
    assert max(train + valid) <= task.longest_lag("train")
    assert max(test) >= 8 * task.longest_lag("train")
    assert min(test) <= task.longest_lag("train")  # the curve also covers the trained lags
    assert task.max_seq_len("test") > task.longest_lag("test")  # a model's max_seq_len from it covers the lags
    assert task.max_seq_len("train") == task.max_seq_len("validation") == base.max_seq_len("test")
    # train and validation are untouched by the test-only option; the test split is not
    for split in ("train", "validation"):
        assert digest(task, split, 8) == digest(base, split, 8)
    assert digest(task, "test", 8) != digest(base, "test", 8)
    # the options record the new value and rebuild the same task (worker processes, checkpoints)
    for k, v in extra.items():
        assert task.options[k] == v
    again = build_task(name, **json.loads(json.dumps(task.options)))
    assert digest(again, "test", 8) == digest(task, "test", 8)
    ds = pickle.loads(pickle.dumps(task.dataset("test")))
    assert ds[5]["input_ids"].tolist() == task.generate("test", 5).ids


def test_passkey_test_distance_cycles_over_the_test_split_only():
    task = build_task("passkey", n_train=8, n_validation=8, n_test=9, distance=[5, 9], test_distance=[40, 0, 17],
                      passkey_len=3, max_prefix=2)
    for split, dists in (("train", [5, 9]), ("validation", [5, 9]), ("test", [40, 0, 17])):
        assert task.split_distances(split) == dists
        for i in range(task.split_size(split)):
            ex = task.generate(split, i)
            assert ex.lags == [dists[i % len(dists)] + 3 + 1]
    assert task.options["distance"] == [5, 9] and task.options["test_distance"] == [40, 0, 17]
    assert build_task("passkey", test_distance=(3, 4)).options["test_distance"] == [3, 4]
    assert build_task("passkey", test_distance=300).options["test_distance"] == 300
    assert build_task("passkey").options["test_distance"] is None


def test_mqar_test_seq_len_sets_the_test_length_only():
    task = build_task("mqar", n_train=6, n_validation=6, n_test=6, seq_len=40, num_pairs=3, test_seq_len=25)
    assert [len(task.generate(s, 0).ids) for s in SPLITS] == [40, 40, 25]  # shorter is allowed too
    assert task.options["test_seq_len"] == 25 and task.options["seq_len"] == 40


@pytest.mark.parametrize("name, kw", [
    ("mqar", {"seq_len": 30, "num_pairs": 3, "num_queries": 2}),
    ("passkey", {"distance": [0, 4], "max_prefix": 2, "passkey_len": 2}),
    ("diffuse_mqar", {"num_pairs": 2, "num_queries": 2, "key_len": 2, "value_len": 1, "key_vocab": 4,
                      "min_lag": 8, "max_lag": 14, "test_lag_factor": 3}),
])
def test_max_seq_len_and_longest_lag_are_attained(name, kw):
    # small tasks, so the extreme layouts occur among a few hundred examples: the bounds are exact
    task = build_task(name, n_train=400, n_validation=1, n_test=400, **kw)
    for split in ("train", "test"):
        lags = check_split_lags(task, split, 400)
        assert max(lags) == task.longest_lag(split)
        assert max(len(task.generate(split, i).ids) for i in range(400)) == task.max_seq_len(split)


@pytest.mark.parametrize("name, bad, err, word", [
    ("passkey", {"test_distance": -1}, ValueError, "test_distance"),
    ("passkey", {"test_distance": []}, ValueError, "test_distance"),
    ("passkey", {"test_distance": [64, -3]}, ValueError, "test_distance"),
    ("passkey", {"test_distance": [64, 1.5]}, TypeError, "test_distance"),
    ("passkey", {"test_distance": True}, TypeError, "test_distance"),
    ("passkey", {"test_distance": "512"}, TypeError, "test_distance"),
    ("mqar", {"test_seq_len": 32}, ValueError, "test_seq_len"),  # < 1 + 2 * (8 pairs + 8 queries)
    ("mqar", {"test_seq_len": 0}, ValueError, "test_seq_len"),
    ("mqar", {"test_seq_len": 512.0}, TypeError, "test_seq_len"),
    ("diffuse_mqar", {"test_lag_factor": 0}, ValueError, "test_lag_factor"),
    ("diffuse_mqar", {"test_lag_factor": 8.0}, TypeError, "test_lag_factor"),
])
def test_bad_test_options_name_the_option(name, bad, err, word):
    with pytest.raises(err, match=word):
        build_task(name, **bad)
