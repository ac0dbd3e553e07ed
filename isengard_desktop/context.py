"""The application context: one volume, its database, settings and the core services over them.

The window and the CLI start through bootstrap.py (``AppContext.from_volume`` on the volume they opened);
tests open one on a temporary folder with ``AppContext.open``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from isengard_desktop.core.characters import CharacterService
from isengard_desktop.core.dataset import DatasetService
from isengard_desktop.storage import settings as settings_store
from isengard_desktop.storage.db import Database
from isengard_desktop.storage.repositories import CharacterRepository, ImageRepository
from isengard_desktop.storage.settings import Settings
from isengard_desktop.storage.volume import Volume

if TYPE_CHECKING:
    from engines.interface import EngineService
    from isengard_desktop.core.importer import Importer
    from isengard_desktop.jobs.manager import JobManager

log = structlog.get_logger(__name__)


@dataclass
class AppContext:
    volume: Volume
    db: Database
    settings: Settings
    mode: str
    characters: CharacterService
    dataset: DatasetService
    services: dict[str, Any] = field(default_factory=dict)  # engine name -> its EngineService (ComfyUI's server)
    # The importer and the job manager are made on first use: a command that needs neither (`characters list`)
    # does not import them (Pillow, multiprocessing, the job runners: issue 14's start-up budget).
    _importer: Importer | None = field(default=None, repr=False)
    _jobs: JobManager | None = field(default=None, repr=False)

    @property
    def importer(self) -> Importer:
        if self._importer is None:
            from isengard_desktop.core.importer import Importer

            self._importer = Importer(self.volume, ImageRepository(self.db), self.settings.min_training_side)
        return self._importer

    @property
    def jobs(self) -> JobManager:
        if self._jobs is None:
            from isengard_desktop.jobs.manager import JobManager

            self._jobs = JobManager(self.volume, self.db)
        return self._jobs

    @classmethod
    def open(cls, root: Path, mode: str) -> AppContext:
        return cls.from_volume(Volume.open(root), mode)

    @classmethod
    def from_volume(cls, volume: Volume, mode: str) -> AppContext:
        """The context on a volume already opened (``Volume.open``): the window and the CLI open it once."""
        db = Database(volume.database_path)
        settings = settings_store.load(volume.settings_path)
        if not volume.settings_path.exists():
            settings_store.save(volume.settings_path, settings)
        characters_repo, images_repo = CharacterRepository(db), ImageRepository(db)
        ctx = cls(
            volume=volume,
            db=db,
            settings=settings,
            mode=mode,
            characters=CharacterService(volume, characters_repo, images_repo),
            dataset=DatasetService(volume, images_repo, characters_repo, settings.min_training_side),
        )
        log.info("volume_opened", root=str(volume.root), mode=mode, schema=db.schema_version())
        try:  # photos a killed import stored without recording them go to the trash (issue 11 item 7)
            from isengard_desktop.core.orphans import collect

            collect(volume, images_repo)
        except OSError as exc:  # a read-only volume still opens
            log.warning("import_leftovers_not_collected", error=str(exc))
        return ctx

    def extra_model_dirs(self) -> list[Path]:
        """The model folders added in Settings (e.g. an existing ComfyUI models/ folder)."""
        return [Path(p) for p in self.settings.extra_model_dirs]

    def service(self, engine: str) -> EngineService | None:
        """The server ``engine`` declares (ProvidesService), or None; made once per context. A training run first
        asks every server to let go of its GPU memory (EngineService.free_memory)."""
        if engine not in self.services:
            from engines import registry
            from isengard_desktop.core.engines import engine_context

            service = registry.service(engine, engine_context(self.volume, engine, self.extra_model_dirs()))
            self.services[engine] = service
            if service is not None:
                self.jobs.before_training.append(service.free_memory)
        return self.services[engine]

    def start_service(self, engine: str) -> None:
        """Start the engine's server in the background if it has one (returns at once)."""
        service = self.service(engine)
        if service is not None:
            service.start()

    def restart_service(self, engine: str) -> None:
        """Start the engine's server again with the current settings and install (e.g. new model folders)."""
        import threading

        service = self.services.get(engine)
        if service is None:
            return
        service.configure(self.extra_model_dirs())

        def restart() -> None:
            service.stop()
            from isengard_desktop.core.engines import describe

            if describe(self.volume, engine).availability.available:
                service.start()

        threading.Thread(target=restart, name=f"restart-{engine}", daemon=True).start()

    def close(self) -> None:
        """Stop what this context started: its idle generation worker and the servers it launched."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=30)
        for name, service in self.services.items():
            if service is not None:
                try:
                    service.stop()
                except Exception as exc:  # closing must go on whatever one engine does
                    log.warning("service_stop_failed", engine=name, error=repr(exc))
        self.db.close()
