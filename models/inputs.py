"""What a model takes: one batch is a tensor (its one argument), a tuple (its positional arguments) or a dict (its
keyword arguments: a Hugging Face model's input_ids and attention_mask; any Mapping, so a tokenizer's
BatchEncoding too). The fixture, the measurements and calibration all pass batches on this way."""
from collections.abc import Mapping


def call(model, inputs):
    """`model` applied to `inputs`: a tuple is its positional arguments, a dict its keyword arguments, anything
    else its one argument."""
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)
