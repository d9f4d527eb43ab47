"""A user's DynaBERT checkpoint served end to end: `--supernet dynabert_mnli --weights
pytorch_model.bin --accuracy-table FILE` profiles it on first start, then answers INT64
input_ids / attention_mask / token_type_ids over KServe v2 JSON and binary with the logits a
direct torch forward of the answering subnet gives. The checkpoint is a small synthetic one in
Hugging Face's layout (2 layers, hidden 32, 2 heads, vocabulary 100)."""
from __future__ import annotations

import json
import urllib.request

import aiohttp
import numpy as np
import pytest
import torch
from bert_toys import write_checkpoint

from models import dynabert
from server.clients.v2 import encode_inputs, infer
from server.launch import ServerProcess

pytestmark = pytest.mark.timeout(300)

SEQ, VOCAB = 16, 100
SOURCE = "made-up figures for a synthetic checkpoint"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynabert")
    weights = write_checkpoint(folder / "bert", heads=2, layers=2, hidden=32, ffn=64,
                               vocab=VOCAB, positions=64, classes=3)
    table = folder / "accuracy.json"
    table.write_text(json.dumps({"source": SOURCE, "accuracy": {
        "w1.0-d1.0": 0.84, "w0.5-d1.0": 0.80, "w1.0-d0.5": 0.78, "w0.5-d0.5": 0.70}}))
    args = ["--supernet", "dynabert_mnli", "--weights", str(weights), "--accuracy-table",
            str(table), "--seq-len", str(SEQ), "--cpus", "1", "--slo-ms", "5000",
            "--profile-args", "--batch-sizes 1,2,4 --budget-s 0.01 --rounds 1"]
    with ServerProcess(args) as s:
        yield s, str(weights)


@pytest.fixture(scope="module")
def reference(served):
    net = dynabert.load("dynabert_mnli", served[1], SEQ)

    def logits(subnet, ids, mask=None, types=None):
        net.actuate(subnet)
        with torch.no_grad():
            return net(torch.from_numpy(ids),
                       attention_mask=None if mask is None else torch.from_numpy(mask),
                       token_type_ids=None if types is None else torch.from_numpy(types)).numpy()
    return logits


def batch(n=2, seed=0):
    """Token ids with [CLS]-like first tokens, a second segment and padding, as a tokenizer
    pads a sentence pair to SEQ."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (n, SEQ), dtype=np.int64)
    mask = np.ones((n, SEQ), np.int64)
    types = np.zeros((n, SEQ), np.int64)
    for i in range(n):
        real = 6 + 3 * i
        ids[i, real:] = 0
        mask[i, real:] = 0
        types[i, real // 2:real] = 1
    return ids, mask, types


def test_first_start_profiles_and_metadata_lists_three_int64_inputs(served):
    s, _ = served
    assert "profiling now" in s.output()
    meta = json.loads(urllib.request.urlopen(f"{s.url}/v2/models/default").read())
    ins = meta["inputs"]
    assert [i["name"] for i in ins] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["datatype"] == "INT64" and i["shape"] == [-1, SEQ] for i in ins)
    assert [i["parameters"]["optional"] for i in ins] == [False, True, True]
    assert ins[0]["parameters"]["datatypes"] == [f"INT64 in [0, {VOCAB - 1}]"]
    p = meta["parameters"]
    assert SOURCE in p["accuracy_source"] and p["accuracy_source"].startswith("table")
    names = {x["name"]: x["accuracy"] for x in p["subnets"]}
    assert set(names) <= {"d1-h2.2", "d1-h1.1", "d0.5-h2", "d0.5-h1"} and "d1-h2.2" in names
    assert names["d1-h2.2"] == 0.84


async def test_json_and_binary_answers_equal_a_torch_forward(served, reference):
    s, _ = served
    ids, mask, types = batch()
    body = {"inputs": [{"name": k, "datatype": "INT64", "shape": list(v.shape),
                        "data": v.ravel().tolist()}
                       for k, v in (("input_ids", ids), ("attention_mask", mask),
                                    ("token_type_ids", types))]}
    async with aiohttp.ClientSession() as session:
        j = await infer(session, s.url, json.dumps(body).encode(),
                        {"Content-Type": "application/json"}, 4000.0)
        b = await infer(session, s.url, *encode_inputs(
            {"token_type_ids": types, "input_ids": ids, "attention_mask": mask}), 4000.0)
        only_ids = await infer(session, s.url, *encode_inputs({"input_ids": ids}), 4000.0)
    for r in (j, b, only_ids):
        assert r.status == 200, r.reason
        assert r.logits.shape == (2, 3)
    np.testing.assert_allclose(j.logits, reference(j.params["subnet"], ids, mask, types),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(b.logits, reference(b.params["subnet"], ids, mask, types),
                               atol=1e-5, rtol=1e-5)
    assert list(j.labels) == list(j.logits.argmax(1))
    # Left out, the mask is all ones and the segments all zeros.
    np.testing.assert_allclose(only_ids.logits, reference(only_ids.params["subnet"], ids),
                               atol=1e-5, rtol=1e-5)
    full = reference(only_ids.params["subnet"], ids, mask, types)
    assert not np.allclose(only_ids.logits, full, atol=1e-3)   # the inputs do matter


@pytest.mark.parametrize("inputs,needle", [
    ({"attention_mask": np.ones((1, SEQ), np.int64)}, "input 'input_ids' is required"),
    ({"input_ids": np.full((1, SEQ), VOCAB, np.int64)}, f"must lie in [0, {VOCAB - 1}]"),
    ({"input_ids": np.full((1, SEQ), -1, np.int64)}, f"must lie in [0, {VOCAB - 1}]"),
    ({"input_ids": np.ones((1, SEQ), np.int64),
      "token_type_ids": np.full((1, SEQ), 2, np.int64)}, "'token_type_ids' holds values"),
    ({"input_ids": np.ones((1, SEQ), np.float32)}, "has datatype 'FP32'"),
    ({"input_ids": np.ones((1, SEQ + 1), np.int64)}, f"does not match [N, {SEQ}]"),
    ({"input_ids": np.ones((2, SEQ), np.int64),
      "attention_mask": np.ones((1, SEQ), np.int64)}, "has 1 samples"),
])
async def test_bad_token_inputs_get_400_with_a_reason(served, inputs, needle):
    s, _ = served
    async with aiohttp.ClientSession() as session:
        r = await infer(session, s.url, *encode_inputs(inputs), 4000.0)
    assert r.status == 400 and needle in r.reason, r.reason


def test_next_start_uses_the_cache_unless_length_or_table_changed(served):
    s, _ = served
    head = s.args[s.args.index("--supernet"):]
    with ServerProcess(head) as again:               # same flags: the cached profile
        assert "profiling now" not in again.output()
    i = head.index("--seq-len")
    shorter = [*head[:i + 1], "8", *head[i + 2:]]
    with ServerProcess(shorter) as short:
        assert "is for sequences of 16 tokens, not --seq-len 8" in short.output()
        meta = json.loads(urllib.request.urlopen(f"{short.url}/v2/models/default").read())
        assert meta["inputs"][0]["shape"] == [-1, 8]
    table = head[head.index("--accuracy-table") + 1]
    with open(table) as f:
        acc = json.load(f)
    acc["accuracy"]["w1.0-d1.0"] = 0.85
    with open(table, "w") as f:
        json.dump(acc, f)
    with ServerProcess(shorter) as changed:
        assert "was not made from the accuracies in" in changed.output()
        meta = json.loads(urllib.request.urlopen(f"{changed.url}/v2/models/default").read())
        assert {x["name"]: x["accuracy"] for x in meta["parameters"]["subnets"]}["d1-h2.2"] == 0.85
