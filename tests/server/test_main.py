"""`python -m server` flags for a user's DynaBERT copy: what is refused before anything starts."""
import pytest

from server.__main__ import build_parser, config_from_args


def cfg(*argv):
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_dynabert_flags_reach_the_config():
    c = cfg("--supernet", "dynabert_mnli", "--weights", "bert/pytorch_model.bin",
            "--seq-len", "64", "--accuracy-table", "acc.json")
    assert (c.supernet, c.weights, c.seq_len, c.accuracy_table) == (
        "dynabert_mnli", "bert/pytorch_model.bin", 64, "acc.json")
    assert cfg().seq_len is None and cfg().accuracy_table is None


def test_the_listen_backlog_reaches_the_config():
    assert cfg().backlog == 1024 and cfg("--backlog", "4096").backlog == 4096


@pytest.mark.parametrize("argv,needle", [
    (["--supernet", "dynabert_mnli"], "needs --weights PATH"),
    (["--seq-len", "64"], "--seq-len is for token models"),
    (["--supernet", "dynabert_sst2", "--weights", "w.bin", "--seq-len", "0"], "--seq-len must"),
    (["--backlog", "0"], "--backlog and --seq-len must be positive"),
])
def test_refused_before_start(argv, needle):
    with pytest.raises(SystemExit, match=needle):
        cfg(*argv)
