"""Video engine scaffold: the place a video engine will plug in. It reports itself not available."""

from __future__ import annotations

from engines.interface import Availability, Engine, EngineTraits


class VideoEngine:
    name = "video"
    kinds = ("video",)

    def availability(self) -> Availability:
        return Availability(False, "Video generation is not part of this version of Isengard Desktop yet.")
