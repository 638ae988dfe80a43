"""Placeholder until the registry lands."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    calibrated: bool


METHODS = {"svd": Method("svd", False)}
