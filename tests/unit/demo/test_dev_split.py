"""The dev split of the shipped training data: 24 lists held out, the rest kept in order, the same every time."""

from lambda_dpo.demo.dataset import demo_data_dir
from lambda_dpo.demo.dev_split import DEV_LISTS, write_dev_split


def test_dev_split_partitions_the_training_split_the_same_way_every_time(tmp_path):
    shipped = (demo_data_dir() / "train.jsonl").read_text().splitlines()
    a, b = write_dev_split(tmp_path / "a"), write_dev_split(tmp_path / "b")
    dev, train = (a / "eval.jsonl").read_text().splitlines(), (a / "train.jsonl").read_text().splitlines()
    assert len(dev) == DEV_LISTS == 24 and len(train) == len(shipped) - 24
    assert sorted(dev + train) == sorted(shipped)
    assert [line for line in shipped if line in set(train)] == train  # the training file's order
    assert (b / "eval.jsonl").read_text() == (a / "eval.jsonl").read_text()
    # the lists research/dev_front.py's recorded rows were tuned on
    assert [shipped.index(line) for line in dev] == [2, 4, 27, 39, 41, 64, 70, 85, 93, 108, 112, 120, 151, 159,
                                                     176, 188, 189, 216, 224, 245, 252, 255, 263, 275]
