"""SlotHeader: the small msgpack record at the front of every ring slot."""
from __future__ import annotations

import math
from dataclasses import dataclass

import msgpack

# numpy dtype name -> bytes per element: what a slot may carry.
DTYPES: dict[str, int] = {
    "float32": 4, "float16": 2, "float64": 8,
    "uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1,
}


@dataclass(frozen=True, slots=True)
class SlotHeader:
    batch_id: int
    request_ids: tuple[int, ...]
    subnet: str                                         # a cascade's first stage
    dtype: str                                          # of the payload tensor, a DTYPES key
    shape: tuple[int, ...]                              # of the payload tensor, batch first
    cascade: tuple[tuple[str, float], ...] | None = None   # ((subnet, threshold), ...)
    load: bool = False                                  # infaas: load the subnet from disk first
    extra: dict | None = None                           # small, msgpack-able

    def __post_init__(self) -> None:
        # Cheap checks only: a header is built and parsed twice per batch on the hot path.
        if self.dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype!r}; supported: {sorted(DTYPES)}")
        if type(self.shape) is not tuple:
            object.__setattr__(self, "shape", tuple(self.shape))
        for d in self.shape:
            if type(d) is not int or d < 0:
                raise ValueError(f"shape must be non-negative ints, got {self.shape!r}")
        if type(self.request_ids) is not tuple:
            object.__setattr__(self, "request_ids", tuple(self.request_ids))
        if self.cascade is not None and type(self.cascade) is not tuple:
            object.__setattr__(
                self, "cascade", tuple((str(s), float(t)) for s, t in self.cascade))

    @property
    def nbytes(self) -> int:
        """Bytes of the payload tensor that dtype and shape describe."""
        return math.prod(self.shape) * DTYPES[self.dtype]

    @property
    def stages(self) -> tuple[tuple[str, float], ...]:
        """The cascade, or the single subnet as a one-stage cascade."""
        return self.cascade if self.cascade else ((self.subnet, 0.0),)

    def pack(self) -> bytes:
        # A positional array: smaller and faster than a map, and this module is its only reader.
        return _pack([self.batch_id, self.request_ids, self.subnet, self.dtype, self.shape,
                      self.cascade, self.load, self.extra])

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> SlotHeader:
        """Inverse of pack(). The bytes come from our own pack() in the peer process, so the
        checks of __init__ are skipped: filling the slots directly costs a third as much, and
        this runs on both sides of every batch."""
        b, rids, subnet, dtype, shape, cascade, load, extra = msgpack.unpackb(
            data, use_list=False, strict_map_key=False)
        h = _new(cls)
        _s_batch(h, b)
        _s_rids(h, rids)
        _s_subnet(h, subnet)
        _s_dtype(h, dtype)
        _s_shape(h, shape)
        _s_cascade(h, cascade)
        _s_load(h, load)
        _s_extra(h, extra)
        return h


_pack = msgpack.Packer().pack          # one Packer: packb() builds a new one per call
_new = object.__new__
# Slot descriptors write the fields of a frozen instance without its __setattr__ guard.
(_s_batch, _s_rids, _s_subnet, _s_dtype, _s_shape, _s_cascade, _s_load, _s_extra) = (
    SlotHeader.__dict__[f].__set__ for f in (
        "batch_id", "request_ids", "subnet", "dtype", "shape", "cascade", "load", "extra"))
