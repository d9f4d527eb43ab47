"""The live subcommands' argument handling (their runs need a server: tests/e2e)."""
import pytest

from loadgen.cli import build_parser, load_profile, load_records, main
from loadgen.live_cli import server_args
from models import zoo


def test_validate_gives_the_live_server_what_the_simulator_gets():
    a = build_parser().parse_args(["validate", "--workers", "2", "--bucket-ms", "2.5",
                                   "--max-batch", "8", "--max-queue", "64"])
    assert server_args(a) == ["--cpus", "2", "--bucket-ms", "2.5", "--max-batch", "8",
                              "--max-queue", "64"]
    a = build_parser().parse_args(["validate"])          # defaults: the server's own
    assert server_args(a) == ["--cpus", "1", "--bucket-ms", "5.0"]
    a = build_parser().parse_args(["validate", "--supernet", "transformer"])
    assert server_args(a) == ["--cpus", "1", "--bucket-ms", "5.0", "--supernet", "transformer"]


def test_validate_refuses_a_profile_the_live_server_would_not_use(capsys):
    assert main(["validate", "--profile", "synthetic"]) == 2
    assert "--profile applies to `simulate` only" in capsys.readouterr().err
    with pytest.raises(SystemExit):                      # argparse: not an embedded one
        main(["validate", "--supernet", "nosuch"])


def test_validate_reads_its_supernets_held_out_records_without_touching_its_arguments():
    a = build_parser().parse_args(["validate", "--supernet", "transformer"])
    path = str(zoo.profile_path("transformer", "cpu"))
    profile = load_profile(path)
    preds = load_records(a, profile, path)      # check()ed against the transformer's subnets
    assert preds is not None and a.profile is None
    assert set(preds.subnets) == {s.name for s in profile.subnets}
