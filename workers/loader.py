"""Where a worker gets its networks: the model zoo, or a stand-in module (tests).

A loader module provides
    load_supernet(name_or_path, device, weights=None) -> net with actuate(config), extract(config),
                                                        input_shape, num_classes, net(x) -> logits
                   (also seq_len=N when the profile's input is int64 token ids: the served length;
                    the net may offer example_input(batch, device), a valid input to warm up on)
    load_profile(name, device, weights=None) -> models.profile_format.Profile
    load_subnet(path, device) -> a standalone module (infaas: a separately stored model)
    save_subnet(module, path)
and optionally
    input_specs(name_or_path) -> tuple[models.inputs.InputSpec, ...] (what the worker applies to
                                 an input before the net: its normalisation; none without it)
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Loader:
    load_supernet: Callable
    load_profile: Callable
    load_subnet: Callable
    save_subnet: Callable
    input_specs: Callable | None = None


def get_loader(spec: str = "models") -> Loader:
    """"models" (the zoo), a module name, or the path of a .py file."""
    if spec == "models":
        from models import inputs, static, zoo
        return Loader(zoo.load_supernet, zoo.load_profile, static.load_subnet, static.save_subnet,
                      inputs.input_specs)
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"loader module {spec} not found")
        mspec = importlib.util.spec_from_file_location(f"_ssv_loader_{path.stem}", path)
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
    else:
        module = importlib.import_module(spec)
    missing = [f for f in ("load_supernet", "load_profile", "load_subnet", "save_subnet")
               if not hasattr(module, f)]
    if missing:
        raise AttributeError(f"loader {spec!r} lacks {', '.join(missing)}")
    return Loader(module.load_supernet, module.load_profile, module.load_subnet,
                  module.save_subnet, getattr(module, "input_specs", None))
