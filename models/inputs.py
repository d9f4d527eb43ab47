"""What a served model accepts on the wire, per input: the one place that states it.

The front end validates requests against these specs and reports them in the model metadata;
the worker applies `normalise` on the device, so clients send what they have (pixels) and never
pre-normalise. Inputs reach the request ring as `ring_dtype` (the model's own dtype): a wire
datatype other than that is converted by the front end with `scale` (UINT8 pixels / 255).
"""
from __future__ import annotations

from dataclasses import dataclass


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

    def format(self, datatype: str) -> WireFormat | None:
        return next((f for f in self.formats if f.datatype == datatype), None)

    @property
    def datatypes(self) -> tuple[str, ...]:
        return tuple(f.datatype for f in self.formats)

    def metadata(self) -> dict:
        """The v2 metadata entry: `datatype` is the preferred one, the rest in parameters."""
        return {"name": self.name, "datatype": self.formats[0].datatype,
                "shape": [-1, *self.shape],
                "parameters": {"datatypes": [f.describe() for f in self.formats],
                               "preprocessing": self.preprocessing}}


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


def input_specs(name_or_path: str, input_shape: tuple[int, ...] | None = None
                ) -> tuple[InputSpec, ...]:
    """The inputs of supernet `name_or_path` (a zoo name, or a checkpoint that
    `python -m models train` wrote, which trains on models/data.py's digits)."""
    from models.zoo import SPECS
    spec = SPECS.get(name_or_path)
    shape = tuple(input_shape) if input_shape is not None else (
        spec.input_shape if spec is not None else (3, 32, 32))
    if name_or_path == "ofa_resnet50":
        return (image_input(shape, IMAGENET_MEAN, IMAGENET_STD),)
    return (image_input(shape, DIGITS_MEAN, DIGITS_STD),)
