"""Which layers a low-rank method applies to: one rule for factorisation and LoRA alike."""
import torch.nn as nn


def matches(name, target):
    """True when `target` is a run of whole dotted parts of `name`: "hidden" and "hidden.1" match "hidden.1"."""
    return f".{target}." in f".{name}."


def linear_layers(model, targets):
    """Names of the nn.Linear modules of `model` matched by any of `targets`. A ValueError, naming the target and the
    module, for a target that reaches no nn.Linear or that names a module holding none (a Conv2d, a LayerNorm):
    the methods factorise nn.Linear layers only, and a target left out silently would look factorised."""
    modules = dict(model.named_modules())
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    for target in targets:
        named = [n for n in modules if n and f".{n}".endswith(f".{target}")]  # the modules the target names itself
        bad = [n for n in named if not any(isinstance(m, nn.Linear) for m in modules[n].modules())]
        if bad or not any(matches(n, target) for n in linears):
            found = ", ".join(f"{n} ({type(modules[n]).__name__})" for n in bad) or "no nn.Linear"
            raise ValueError(f"target {target!r} matches {found}; low-rank methods factorise nn.Linear layers only "
                             f"(the model's: {', '.join(linears) or 'none'})")
    return [n for n in linears if any(matches(n, t) for t in targets)]
