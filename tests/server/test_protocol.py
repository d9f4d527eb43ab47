import json

import numpy as np
import pytest

from models.inputs import DIGITS_MEAN, DIGITS_STD, image_input, token_inputs
from server.clients.v2 import encode_inputs
from server.protocol import (
    MAX_JSON_DEPTH,
    ProtocolError,
    encode_infer,
    json_depth,
    parse_deadline_header,
    parse_infer,
)

SHAPE = (3, 4, 4)
KW = {"specs": (image_input(SHAPE, DIGITS_MEAN, DIGITS_STD),), "max_samples": 8}
HUGE = int("1" + "0" * 400)


def body(n=2, datatype="FP32", shape=None, data=None, **top):
    x = np.linspace(0, 1, n * 48, dtype=np.float32)
    req = {"inputs": [{"name": "input", "shape": shape or [n, *SHAPE], "datatype": datatype,
                       "data": x.tolist() if data is None else data}]}
    req.update(top)
    return json.dumps(req).encode(), x


def reason(raw, hdr=None, **kw):
    with pytest.raises(ProtocolError) as e:
        parse_infer(raw, hdr, **{**KW, **kw})
    return e.value.status, e.value.reason


def test_json_tensor_bytes_are_exact():
    raw, x = body()
    inp = parse_infer(raw, None, **KW)
    assert inp.n == 2 and not inp.binary_output
    assert np.array_equal(np.frombuffer(inp.data, np.float32), x)


def test_binary_extension_is_a_view_of_the_body():
    x = np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": [3, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True, "timeout": 5000}}).encode()
    raw = head + x.tobytes()
    inp = parse_infer(raw, str(len(head)), **KW)
    assert inp.binary_output and inp.timeout_us == 5000
    assert inp.data.obj is raw   # no copy
    assert np.array_equal(np.frombuffer(inp.data, np.float32).reshape(x.shape), x)


@pytest.mark.parametrize("raw,needle", [
    (b"{not json", "malformed JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"inputs": []}).encode(), "list of 1 tensor object"),
    (body(datatype="FP16")[0], "datatype 'FP16'"),
    (body(datatype=None)[0], "datatype None"),
    (body(shape=[2, 3, 4, 5])[0], "does not match"),
    (body(shape=[9, *SHAPE], data=[0.0] * 9 * 48)[0], "between 1 and 8"),
    (body(data=[1.0, 2.0])[0], "holds 2 values"),
    (body(data=["a"] * 96)[0], "not a FP32 tensor"),
    (body(parameters={"timeout": -3})[0], "timeout"),
    (body(parameters={"timeout": HUGE})[0], "timeout"),
    (body(parameters={"timeout": True})[0], "timeout"),
    (body(parameters=[1])[0], "'parameters' must be an object"),
    (body(outputs=5)[0], "'outputs' must be a list of objects"),
    (body(outputs=True)[0], "'outputs' must be a list of objects"),
    (body(outputs=1.5)[0], "'outputs' must be a list of objects"),
    (body(outputs=[1])[0], "'outputs' must be a list of objects"),
    (body(outputs=[{"name": "logits", "parameters": [1]}])[0], "'parameters' must be an object"),
    (body(outputs=[{"parameters": "x"}])[0], "unknown output None"),
    (body(outputs=[{"name": "label", "parameters": "x"}])[0], "'parameters' must be an object"),
    (body(id={"a": 1})[0], "'id' must be a string"),
    (body(id="x" * 1000)[0], "'id' must be a string"),
    (body(data=[HUGE] + [0.0] * 95)[0], "not a FP32 tensor"),
    (body(data=[3e38] + [0.0] * 95)[0], "in [0, 3e+38]"),
    (body(data=[1e39] + [0.0] * 95)[0], "NaN or infinity"),
    (body(data=[-0.5] + [0.0] * 95)[0], "must lie in [0, 1]"),
    (body(data=[1.5] * 96)[0], "must lie in [0, 1]"),
    (b'{"inputs": [{"name": "input", "data": [NaN]}]}', "NaN is not valid JSON"),
    (b'{"inputs": Infinity}', "Infinity is not valid JSON"),
    (b"[" * 100_000, f"deeper than {MAX_JSON_DEPTH}"),
    (b'{"id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", f"deeper than {MAX_JSON_DEPTH}"),
    (body(data="[" * 50_000 + "]" * 50_000)[0], "not a FP32 tensor"),
    (body(datatype="UINT8", data=[1.5] * 96)[0], "must be integers"),
    (body(datatype="UINT8", data=[256] * 96)[0], "outside [0, 255]"),
    (body(datatype="UINT8", data=[True] * 96)[0], "must be integers"),
])
def test_bad_requests_get_specific_reasons(raw, needle):
    status, why = reason(raw)
    assert status == 400 and needle in why


def test_deep_data_is_refused_before_parsing():
    raw = body(data=[])[0].replace(b'"data": []', b'"data": ' + b"[" * 50_000 + b"]" * 50_000)
    assert f"deeper than {MAX_JSON_DEPTH}" in reason(raw)[1]
    # Brackets inside strings are no nesting.
    assert json_depth(b'{"id": "' + b"[" * 1000 + b'"}') == 1


def test_binary_nan_and_range_are_refused():
    for bad_value, needle in ((np.nan, "NaN or infinity"), (np.inf, "NaN or infinity"),
                              (2.0, "must lie in [0, 1]")):
        x = np.zeros((1, *SHAPE), np.float32)
        x.flat[5] = bad_value
        head = json.dumps({"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}]}).encode()
        assert needle in reason(head + x.tobytes(), str(len(head)))[1]


def test_uint8_pixels_become_fp32_in_unit_range():
    px = np.arange(48, dtype=np.uint8).reshape(1, *SHAPE) * 5
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "UINT8",
                                   "parameters": {"binary_data_size": px.nbytes}}]}).encode()
    inp = parse_infer(head + px.tobytes(), str(len(head)), **KW)
    got = np.frombuffer(inp.data, np.float32)
    assert np.allclose(got, px.ravel() / 255.0) and got.max() <= 1.0
    raw, _ = body(n=1, datatype="UINT8", data=px.ravel().tolist())
    assert np.array_equal(np.frombuffer(parse_infer(raw, None, **KW).data, np.float32), got)


def test_binary_size_mismatch_is_refused():
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 192}}]}).encode()
    assert "needs 192" in reason(head + b"\0" * 100, str(len(head)))[1]
    assert "not an integer" in reason(head, "x")[1]


@pytest.mark.parametrize("v", ["-1", "0", "nan", "inf", "soon"])
def test_bad_deadline_header(v):
    with pytest.raises(ProtocolError) as e:
        parse_deadline_header(v)
    assert e.value.status == 400 and "X-Deadline-Ms" in e.value.reason


def test_encode_json_and_binary_round_trip():
    raw, _ = body(n=1, id="abc")
    logits = np.array([[0.1, 2.0, -1.0]], np.float32)
    out, hdr = encode_infer("default", parse_infer(raw, None, **KW), logits, {"subnet": "s"})
    r = json.loads(out)
    assert r["id"] == "abc" and r["outputs"][1]["data"] == [1]
    assert np.allclose(r["outputs"][0]["data"], logits.ravel())
    raw, _ = body(n=1, parameters={"binary_data_output": True})
    out, hdr = encode_infer("default", parse_infer(raw, None, **KW), logits, {})
    n = int(hdr["Inference-Header-Content-Length"])
    assert np.array_equal(np.frombuffer(out[n:n + 12], np.float32), logits.ravel())


# --- several named inputs: BERT's INT64 token ids, packed into one ring tensor -------------
TOK = {"specs": token_inputs(6, vocab_size=50), "max_samples": 8}


def tokens(n=2, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 50, (n, 6), dtype=np.int64)
    mask = np.ones((n, 6), np.int64)
    mask[:, 4:] = 0
    types = np.zeros((n, 6), np.int64)
    types[:, 2:4] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def json_tokens(t: dict, **overrides) -> bytes:
    ins = [{"name": k, "datatype": "FP32" if v.dtype.kind == "f" else "INT64",
            "shape": list(v.shape), "data": v.ravel().tolist()} for k, v in t.items()]
    for i in ins:
        i.update(overrides.get(i["name"], {}))
    return json.dumps({"inputs": ins}).encode()


def binary_tokens(t: dict) -> tuple[bytes, str]:
    raw, hdr = encode_inputs(t)
    return raw, hdr["Inference-Header-Content-Length"]


def packed(inp) -> np.ndarray:
    return np.frombuffer(inp.data, np.int64).reshape(inp.n, 3, 6)


def test_token_inputs_pack_into_one_int64_tensor_json_and_binary_alike():
    t = tokens()
    want = np.stack([t["input_ids"], t["attention_mask"], t["token_type_ids"]], 1)
    a = parse_infer(json_tokens(t), None, **TOK)
    # Binary bytes follow the header in the request's order, whatever the spec order.
    shuffled = {k: t[k] for k in ("token_type_ids", "input_ids", "attention_mask")}
    b = parse_infer(*binary_tokens(shuffled), **TOK)
    assert a.n == b.n == 2
    assert np.array_equal(packed(a), want) and np.array_equal(packed(b), want)


def test_left_out_mask_and_segments_take_their_defaults():
    t = tokens(n=3)
    inp = parse_infer(*binary_tokens({"input_ids": t["input_ids"]}), **TOK)
    p = packed(inp)
    assert np.array_equal(p[:, 0], t["input_ids"])
    assert (p[:, 1] == 1).all() and (p[:, 2] == 0).all()


@pytest.mark.parametrize("make,needle", [
    (lambda t: {"attention_mask": t["attention_mask"]}, "input 'input_ids' is required"),
    (lambda t: {**t, "input_ids": t["input_ids"] + 50}, "must lie in [0, 49]"),
    (lambda t: {**t, "input_ids": t["input_ids"] - 60}, "must lie in [0, 49]"),
    (lambda t: {**t, "attention_mask": t["attention_mask"] * 2}, "'attention_mask' holds"),
    (lambda t: {**t, "token_type_ids": t["token_type_ids"] + 1}, "'token_type_ids' holds"),
    (lambda t: {**t, "input_ids": t["input_ids"].astype(np.float32)}, "has datatype 'FP32'"),
    (lambda t: {**t, "attention_mask": t["attention_mask"][:, :5]},
     "'attention_mask' of shape [2, 5] does not match [N, 6]"),
    (lambda t: {**t, "token_type_ids": t["token_type_ids"][:1]}, "has 1 samples"),
])
def test_bad_token_inputs_get_specific_reasons(make, needle):
    t = make(tokens())
    for raw, hdr in ((json_tokens(t), None), binary_tokens(t)):
        status, why = reason(raw, hdr, **TOK)
        assert status == 400 and needle in why, why


def test_token_json_refusals():
    t = tokens()
    cases = [
        (json_tokens(t, input_ids={"data": [1.5] * 12}), "must be integers"),
        (json_tokens(t, input_ids={"data": [2 ** 63] * 12}), "outside"),
        (json_tokens(t, input_ids={"datatype": "INT32"}), "accepts INT64 in [0, 49]"),
        (json_tokens(t, attention_mask={"name": "input_ids"}), "at most once"),
        (json_tokens(t, token_type_ids={"name": "segment"}), "unknown input 'segment'"),
        (json.dumps({"inputs": []}).encode(), "list of 1 to 3 tensor object(s)"),
    ]
    for raw, needle in cases:
        status, why = reason(raw, **TOK)
        assert status == 400 and needle in why, why
