"""One-line errors for config values, naming the key and its valid range (a leaf: the models,
the data and the run's config checks use it)."""


def check_number(key: str, value, low: float, integer: bool = False) -> None:
    """Raise a ValueError `<key>=<value>: give a (whole) number >= <low>` unless value fits."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= low:
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{key}={value!r}: give {kind} >= {low:g}")
