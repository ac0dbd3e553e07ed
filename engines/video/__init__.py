"""Video engine scaffold: the place a video engine will plug in. It reports itself not available."""

from __future__ import annotations

from engines.interface import Availability, Engine, EngineTraits


class VideoEngine(Engine):
    name = "video"
    traits = EngineTraits(title="Video", kinds=("video",), rank=90)

    def availability(self) -> Availability:
        return Availability(False, "Video generation is not part of this version of Isengard Desktop yet.")
