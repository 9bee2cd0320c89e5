"""Option types shared by several commands."""

from __future__ import annotations

import re

import click


class SizeType(click.ParamType):
    """``WxH`` -> (width, height)."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            self.fail(f"{value!r} is not a size like 256x128 (width x height, positive integers)", param, ctx)
        return int(m.group(1)), int(m.group(2))


SIZE = SizeType()
