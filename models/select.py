"""Which layers a low-rank method applies to: one rule for factorisation and LoRA alike."""
import torch.nn as nn


def matches(name, target):
    """True when `target` is a run of whole dotted parts of `name`: "hidden" and "hidden.1" match "hidden.1"."""
    return f".{target}." in f".{name}."


def linear_layers(model, targets):
    """Names of the nn.Linear modules of `model` matched by any of `targets`; a ValueError if there are none."""
    linears = [n for n, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    names = [n for n in linears if any(matches(n, t) for t in targets)]
    if not names:
        raise ValueError(f"targets {list(targets)} match no nn.Linear; the model's linear layers are {linears}")
    return names
