"""Named supernets, their checkpoints, per-subnet statistics and cached profiles.

Files for a supernet NAME (the embedded default lives in models/zoo/):
  NAME.pt            weights: {"format", "spec", "state_dict", "meta"} (for foreign checkpoints
                     such as OFA's, whatever file --weights names)
  NAME.stats.pt      SubnetNorm statistics per calibrated subnet (see SuperNet.stats_state)
  NAME.<dev>.json    the profile for device kind <dev> ("cpu" or "cuda")
  NAME.json          provenance of the weights: train command, seed, wall time, accuracies
For a checkpoint given by path (e.g. `--supernet runs/x.pt`), the same files sit beside it:
runs/x.stats.pt, runs/x.cpu.json.
"""
from __future__ import annotations

from pathlib import Path

from models.profile_format import Profile
from models.space import ResNetSpec
from models.transformer_space import TransformerSpec

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
CHECKPOINT_FORMAT = 1

SPECS: dict[str, ResNetSpec] = {
    # Once-for-All's OFA-ResNet50 (ImageNet): ofa_resnet50_d=0+1+2_e=0.2+0.25+0.35_w=0.65+0.8+1.0
    "ofa_resnet50": ResNetSpec(
        name="ofa_resnet50", input_shape=(3, 224, 224), num_classes=1000,
        stem_channels=64, stem_stride=2, stem_maxpool=True,
        stage_widths=(256, 512, 1024, 2048), stage_strides=(1, 2, 2, 2), base_depths=(2, 2, 4, 2),
        depth_list=(0, 1, 2), expand_list=(0.2, 0.25, 0.35), width_list=(0.65, 0.8, 1.0),
        divisor=8),
    # The embedded default: colour digits at 32x32 (models/data.py). On CPU at batch 1 the
    # per-layer overhead (~50 us a conv) dominates small subnets, so the space reaches from
    # 3 blocks at quarter width up to 12 full-width blocks plus a stem at full resolution:
    # a >= 4x batch-1 latency spread for ~5 minutes of training.
    "default": ResNetSpec(
        name="default", input_shape=(3, 32, 32), num_classes=10,
        stem_channels=32, stem_stride=1, stem_maxpool=False,
        stage_widths=(64, 128, 256), stage_strides=(2, 2, 2), base_depths=(1, 1, 1),
        depth_list=(0, 1, 2, 3), expand_list=(0.15, 0.25, 0.35), width_list=(0.25, 0.5, 1.0),
        divisor=4),
}

TRANSFORMER_SPECS: dict[str, TransformerSpec] = {
    # The embedded transformer: MNIST-1D signals (models/signals.py), 40 samples cut into 10
    # patches of 8 (stride 4) plus [CLS]; DynaBERT's space (depth x heads, FFN at the heads'
    # fraction). Small enough to train on two shared CPU cores.
    "transformer": TransformerSpec(
        name="transformer", num_classes=10, hidden=96, layers=6, heads=4, ffn=192,
        depth_list=(0.5, 0.75, 1.0), head_list=(1, 2, 3, 4), embedding="signal",
        input_shape=(1, 40), patch=8, patch_stride=4, layer_norm_eps=1e-5),
}


def _base(name_or_path: str, weights: str | None) -> Path:
    """The path stem that the supernet's side files hang off."""
    if name_or_path in SPECS or name_or_path in TRANSFORMER_SPECS or name_or_path in _dynabert():
        if weights is not None:
            w = Path(weights)
            return w.with_name(w.name.removesuffix(".pt").removesuffix(".pth").removesuffix(".tar"))
        return ZOO_DIR / name_or_path
    p = Path(name_or_path)
    if p.suffix in (".pt", ".pth"):
        return p.with_suffix("")
    raise ValueError(f"unknown supernet {name_or_path!r}: expected one of {sorted(SPECS)} "
                     f"or the path of a checkpoint written by `python -m models train`")


def _dynabert() -> dict:
    from models.dynabert import SPECS as DYNABERT

    return DYNABERT


def weights_path(name_or_path: str, weights: str | None = None) -> Path:
    if weights is not None:
        return Path(weights)
    if name_or_path in SPECS or name_or_path in TRANSFORMER_SPECS:
        return ZOO_DIR / f"{name_or_path}.pt"
    return Path(name_or_path)


def stats_path(name_or_path: str, weights: str | None = None) -> Path:
    b = _base(name_or_path, weights)
    return b.with_name(b.name + ".stats.pt")


def device_kind(device: str) -> str:
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return kind


def profile_path(name: str, device: str, weights: str | None = None) -> Path:
    """Where the cached profile of supernet `name` on `device` lives (one per device kind)."""
    b = _base(name, weights)
    return b.with_name(f"{b.name}.{device_kind(device)}.json")


def profiled(device: str = "cpu") -> list[str]:
    """The embedded supernets whose profile on `device` is committed: what the simulator can
    model, and a server serve, without profiling first."""
    return [n for n in (*SPECS, *TRANSFORMER_SPECS) if profile_path(n, device).exists()]


def load_profile(name: str, device: str, weights: str | None = None) -> Profile:
    path = profile_path(name, device, weights)
    if not path.exists():
        raise FileNotFoundError(f"no profile for {name!r} on {device_kind(device)} at {path}; "
                                f"make one with: python -m models profile --supernet {name} "
                                f"--device {device}")
    return Profile.load(path)


def load_supernet(name_or_path: str = "default", device: str = "cpu", weights: str | None = None,
                  seq_len: int | None = None):
    """The supernet with its weights and every calibrated subnet's statistics, in eval mode.

    "default" loads the committed checkpoint; "ofa_resnet50" needs `weights` (the public
    Once-for-All checkpoint, a state_dict or {"state_dict": ...}); a path loads a checkpoint
    written by `python -m models train`; a DynaBERT name needs `weights` (a Hugging Face BERT
    state_dict) and serves sequences of `seq_len` tokens (default models.dynabert.SEQ_LEN; a
    serving choice, not part of the weights, so the profile records it).
    """
    import torch

    from models.supernet import SuperNet

    _base(name_or_path, weights)        # rejects unknown names with the list of known ones
    wpath = weights_path(name_or_path, weights)
    if seq_len is not None and name_or_path not in _dynabert():
        raise ValueError(f"a sequence length is for token models ({sorted(_dynabert())}), "
                         f"not {name_or_path!r}")
    if seq_len is not None and seq_len < 1:
        raise ValueError(f"sequence length must be positive, got {seq_len}")
    if name_or_path == "ofa_resnet50" and weights is None:
        raise ValueError("ofa_resnet50 needs --weights PATH: the Once-for-All checkpoint "
                         "(ofa_resnet50_d=0+1+2_e=0.2+0.25+0.35_w=0.65+0.8+1.0); nothing is downloaded")
    if name_or_path in _dynabert():
        if weights is None:
            raise ValueError(f"{name_or_path} needs --weights PATH: a DynaBERT checkpoint "
                             f"(pytorch_model.bin); nothing is downloaded")
        from models import dynabert

        net = dynabert.load(name_or_path, str(wpath), seq_len)
        return _with_stats(net, name_or_path, weights, device)
    if not wpath.exists():
        raise FileNotFoundError(f"checkpoint {wpath} not found")
    blob = torch.load(wpath, map_location="cpu", weights_only=True)
    if isinstance(blob, dict) and "embedding" in blob.get("spec", {}):
        from models.transformer import TransformerSuperNet

        net = TransformerSuperNet(TransformerSpec.from_json(blob["spec"]))
        net.load_state_dict(blob["state_dict"])
        return _with_stats(net, name_or_path, weights, device)
    if isinstance(blob, dict) and "spec" in blob:
        if blob.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{wpath}: checkpoint format {blob.get('format')!r}, "
                             f"expected {CHECKPOINT_FORMAT}")
        spec = ResNetSpec.from_json(blob["spec"])
        state = blob["state_dict"]
    elif name_or_path in SPECS:
        spec = SPECS[name_or_path]
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
        if not isinstance(state, dict):
            raise ValueError(f"{wpath}: not a state_dict checkpoint")
    else:
        raise ValueError(f"{wpath}: no architecture spec inside; name the supernet "
                         f"(--supernet ofa_resnet50 --weights {wpath})")
    net = SuperNet(spec)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{wpath} does not match supernet {spec.name!r}: {e}") from None
    spath = stats_path(name_or_path, weights)
    if spath.exists():
        net.load_stats_state(torch.load(spath, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def _with_stats(net, name_or_path: str, weights: str | None, device: str):
    import torch

    spath = stats_path(name_or_path, weights)
    if spath.exists():
        net.load_stats_state(torch.load(spath, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def save_checkpoint(net, path: str | Path, meta: dict | None = None) -> None:
    import torch

    sd = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "spec": net.spec.to_json(), "state_dict": sd,
                "meta": meta or {}}, Path(path))


def save_stats(net, name_or_path: str, weights: str | None = None) -> Path:
    import torch

    path = stats_path(name_or_path, weights)
    torch.save(net.stats_state(), path)
    return path
