"""What a served model accepts on the wire, per input: the one place that states it.

The front end validates requests against these specs and reports them in the model metadata;
the worker applies `normalise` on the device, so clients send what they have (pixels) and never
pre-normalise. Inputs reach the request ring as `ring_dtype` (the model's own dtype): a wire
datatype other than that is converted by the front end with `scale` (UINT8 pixels / 255).

The ring carries one tensor per request. A model of several inputs (BERT's input_ids,
attention_mask, token_type_ids) has them stacked on dim 1 by `pack` ([n, 3, seq] int64) and
split again by the model (models/transformer.py `unpack`): three views of one slot, so neither
the ring, the batching nor the workers learn about named inputs. An input with a `default` may
be left out of a request; the front end fills it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One accepted KServe v2 datatype of an input and what its values mean."""
    datatype: str                        # KServe v2 name: "FP32", "UINT8", "INT64", ...
    low: float | None = None             # inclusive bounds checked on every request
    high: float | None = None
    scale: float = 1.0                   # ring value = wire value * scale

    def describe(self) -> str:
        rng = "" if self.low is None else f" in [{self.low:g}, {self.high:g}]"
        return f"{self.datatype}{rng}"


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]               # per sample; the leading batch dimension is implied
    formats: tuple[WireFormat, ...]      # accepted datatypes, the first one preferred
    ring_dtype: str = "float32"          # numpy dtype the worker reads
    # Applied by the worker after conversion: (x - mean[c]) / std[c] per channel (dim 0).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    preprocessing: str = ""
    default: int | float | None = None   # the value of every element when the input is left
                                         # out; None: the input is required

    @property
    def required(self) -> bool:
        return self.default is None

    def format(self, datatype: str) -> WireFormat | None:
        return next((f for f in self.formats if f.datatype == datatype), None)

    @property
    def datatypes(self) -> tuple[str, ...]:
        return tuple(f.datatype for f in self.formats)

    def metadata(self) -> dict:
        """The v2 metadata entry: `datatype` is the preferred one, the rest in parameters."""
        params = {"datatypes": [f.describe() for f in self.formats],
                  "preprocessing": self.preprocessing, "optional": not self.required}
        if not self.required:
            params["default"] = self.default
        return {"name": self.name, "datatype": self.formats[0].datatype,
                "shape": [-1, *self.shape], "parameters": params}


def image_input(shape: tuple[int, ...], mean: tuple[float, ...], std: tuple[float, ...],
                name: str = "input") -> InputSpec:
    """RGB images as FP32 in [0, 1] or UINT8 in [0, 255] (a quarter of the bytes)."""
    def fmt(v: tuple[float, ...]) -> str:
        return ", ".join(f"{c:g}" for c in v)
    text = (f"pixels as FP32 in [0, 1] or UINT8 in [0, 255] (divided by 255), channels first "
            f"{list(shape)}; the server normalises (x - [{fmt(mean)}]) / [{fmt(std)}] per "
            f"channel: send raw pixels, not normalised ones")
    return InputSpec(name=name, shape=tuple(shape),
                     formats=(WireFormat("FP32", 0.0, 1.0), WireFormat("UINT8", 0, 255, 1 / 255)),
                     mean=tuple(mean), std=tuple(std), preprocessing=text)


# models/data.py renders [0, 1] pixels; training normalised them with these constants.
DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.25, 0.25, 0.25)
# Once-for-All's ImageNet normalisation (torchvision's).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def signal_input(shape: tuple[int, ...], name: str = "input") -> InputSpec:
    """A 1-D signal as FP32 (MNIST-1D: already standardised by its generator)."""
    return InputSpec(name=name, shape=tuple(shape), formats=(WireFormat("FP32", -1e4, 1e4),),
                     preprocessing=f"a standardised 1-D signal {list(shape)} (MNIST-1D's "
                                   f"make_dataset output); no server-side normalisation")


def token_inputs(seq_len: int, vocab_size: int = 30522, type_vocab_size: int = 2
                 ) -> tuple[InputSpec, ...]:
    """BERT's inputs, in the order `pack` stacks them: INT64 token ids (required), then the
    attention mask (default all ones) and the segment ids (default all zeros)."""
    ids = (f"WordPiece token ids in [0, {vocab_size}) (the checkpoint's vocabulary, e.g. "
           f"bert-base-uncased), [CLS] first, padded to {seq_len}, as the tokenizer gives them "
           f"with max_length={seq_len}, padding='max_length'")
    return (InputSpec("input_ids", (seq_len,), (WireFormat("INT64", 0, vocab_size - 1),),
                      "int64", preprocessing=ids),
            InputSpec("attention_mask", (seq_len,), (WireFormat("INT64", 0, 1),), "int64",
                      preprocessing="1 for real tokens, 0 for padding; default all ones",
                      default=1),
            InputSpec("token_type_ids", (seq_len,),
                      (WireFormat("INT64", 0, type_vocab_size - 1),), "int64",
                      preprocessing="segment ids: 0 for the first sentence, 1 for the second; "
                                    "default all zeros", default=0))


def pack(specs: tuple[InputSpec, ...], tensors: dict[str, memoryview], n: int) -> memoryview:
    """The one ring payload of a request: its only input's bytes as they are, or every input
    ([n, *shape] in ring_dtype, C order) stacked on dim 1, a left-out optional one filled
    with its default."""
    if len(specs) == 1:
        return tensors[specs[0].name]
    shape, dtype = specs[0].shape, np.dtype(specs[0].ring_dtype)
    out = np.empty((n, len(specs), *shape), dtype)
    for i, s in enumerate(specs):
        t = tensors.get(s.name)
        if t is None:
            out[:, i] = s.default
        else:
            out[:, i] = np.frombuffer(t, dtype, count=n * math.prod(shape)).reshape(n, *shape)
    return memoryview(out).cast("B")


def packable(specs: tuple[InputSpec, ...]) -> None:
    """Refuse specs `pack` cannot stack (a bug in a spec, caught at start-up)."""
    if len({(s.shape, s.ring_dtype) for s in specs}) > 1:
        raise ValueError(f"inputs {[s.name for s in specs]} differ in shape or ring dtype: "
                         f"they cannot share one ring tensor")
    if specs and specs[0].default is not None:
        raise ValueError(f"the first input {specs[0].name!r} must be required")


def served_inputs(name_or_path: str, profile) -> tuple[InputSpec, ...]:
    """The inputs of the supernet a profile describes: its ring shape, and for a token model
    the vocabulary sizes the profiler recorded from the checkpoint."""
    vocab = profile.meta.get("token_vocab")
    return input_specs(name_or_path, tuple(profile.input_shape),
                       vocab=tuple(vocab) if vocab else None)


def input_specs(name_or_path: str, input_shape: tuple[int, ...] | None = None,
                vocab: tuple[int, int] | None = None) -> tuple[InputSpec, ...]:
    """The inputs of supernet `name_or_path` (a zoo name, or a checkpoint that
    `python -m models train` wrote, which trains on models/data.py's digits). For a DynaBERT
    name, `input_shape` is the ring's (3, seq) or (seq,) and `vocab` (vocab_size,
    type_vocab_size), BERT-base's without it."""
    from models.dynabert import SPECS as DYNABERT
    from models.zoo import SPECS, TRANSFORMER_SPECS
    if name_or_path in TRANSFORMER_SPECS:
        return (signal_input(tuple(input_shape or TRANSFORMER_SPECS[name_or_path].input_shape)),)
    if name_or_path in DYNABERT:
        spec = DYNABERT[name_or_path]
        v, t = vocab or (spec.vocab_size, spec.type_vocab_size)
        return token_inputs((input_shape or spec.input_shape)[-1], v, t)
    spec = SPECS.get(name_or_path)
    shape = tuple(input_shape) if input_shape is not None else (
        spec.input_shape if spec is not None else (3, 32, 32))
    if name_or_path == "ofa_resnet50":
        return (image_input(shape, IMAGENET_MEAN, IMAGENET_STD),)
    return (image_input(shape, DIGITS_MEAN, DIGITS_STD),)
