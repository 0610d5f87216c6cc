"""The control plane's services, wired together once per server process.

``start()`` loads the in-memory presence and active commands from the database;
``run_background()`` owns the periodic work (the dispatcher, webhook deliveries, flushing
last-seen times, pruning processed message ids) until cancelled, each loop supervised
(``services/supervise.py``: a failure is logged, counted and retried, and ``/readyz``
names a loop that keeps failing);
``stop()`` wakes held polls, flushes, and closes the database.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from agent import wire
from agent.inventory import schema
from control_plane.config import ServerConfig
from control_plane.errors import CorralError
from control_plane.security.ca import CertificateAuthority
from control_plane.security.keyring import KeyRing
from control_plane.security.node_tokens import NodeTokenSigner
from control_plane.services.activations import ActivationService
from control_plane.services.associations import AssociationJob, AssociationService, Runs
from control_plane.services.audit import AuditService
from control_plane.services.blobs import BlobStore
from control_plane.services.calendars import CalendarService
from control_plane.services.channel import AgentChannel
from control_plane.services.clock import Clock, system_clock
from control_plane.services.commands.dispatcher import Dispatcher
from control_plane.services.commands.reports import UpdateStore
from control_plane.services.commands.service import CommandService
from control_plane.services.compliance import ComplianceService
from control_plane.services.documents import DocumentService
from control_plane.services.events import EventBus
from control_plane.services.groups import GroupService
from control_plane.services.inventory import Ingest, InventoryService
from control_plane.services.node_events import NodeEventService
from control_plane.services.nodes import NodeService
from control_plane.services.openings import Openings
from control_plane.services.operators import OperatorService
from control_plane.services.packages import PackageService, package_dirs
from control_plane.services.parameters.service import ParameterService
from control_plane.services.patching import PatchService
from control_plane.services.presence import Presence
from control_plane.services.ratelimit import RateLimits
from control_plane.services.registration import RegistrationService
from control_plane.services.scheduling import Lease, Scheduler
from control_plane.services.sessions import Preferences, SessionService
from control_plane.services.supervise import Passed, Supervisor
from control_plane.services.webhooks import WebhookService
from control_plane.services.windows import WindowJob, WindowService
from control_plane.store import messages
from control_plane.store import nodes as node_store
from control_plane.store.db import Database

log = logging.getLogger("corral.server")

FLUSH_INTERVAL = 10.0
PROCESSED_RETENTION = 7 * 24 * 3600.0
DISPATCH_STALE_AFTER = 60.0  # the dispatcher passes every second; a minute without is stuck


class ControlPlane:
    def __init__(self, config: ServerConfig, clock: Clock = system_clock) -> None:
        self.config = config
        self.clock = clock
        self.db = Database(config.async_database_url)
        self.ca = CertificateAuthority.load(config.ca_file, config.ca_key_file)
        self.ca_pem = self.ca.cert_pem
        self.presence = Presence()
        self.openings = Openings(config.channel_max_opening)
        signer = NodeTokenSigner(_read_secret(config), config.node_token_minutes * 60.0)
        self.channel = AgentChannel(self.db, self.presence, clock)
        self.operators = OperatorService(self.db, clock)
        self.activations = ActivationService(self.db, clock)
        self.registration = RegistrationService(
            self.db, self.ca, signer, self.presence, clock, config.node_credential_days
        )
        self.nodes = NodeService(self.db, self.presence, self.channel, clock)
        self.documents = DocumentService(self.db, clock)
        self.events = EventBus()
        self.blobs = BlobStore(config.data_dir / "blobs")
        self.dispatcher = Dispatcher(self.db, self.presence, self.events, clock)
        self.nodes.on_deregistered = self.dispatcher.node_deregistered
        self.channel.register_expander(wire.MSG_RUN_COMMAND, self.dispatcher.expand)
        self.parameters = ParameterService(self.db, clock, self.events, self.keyring)
        self.commands = CommandService(
            self.db, self.documents, self.dispatcher, self.channel, clock, self.parameters
        )
        self.dispatcher.parameter_values = self.parameters.values_for
        # Package distribution (services/packages/): an agent upgrade names a version we have.
        self.packages = PackageService(config.data_dir, package_dirs(config.packages_path))
        self.commands.agent_update_check = self.packages.check_update
        self.compliance = ComplianceService(
            self.db, clock, config.compliance_history_retention_seconds
        )
        # Node reports are stored with the compliance their steps put, in one transaction.
        self.channel.register_batch_handler(
            wire.MSG_INVOCATION_UPDATE, UpdateStore(self.dispatcher, clock, self.compliance).store
        )
        # Inventory (services/inventory/): uploads stored in the channel writer's group.
        self.inventory_ingest = Ingest(
            self.events,
            self.presence,
            clock,
            bytes_per_hour=config.inventory_upload_mib_per_hour * 2**20,
        )
        self.inventory = InventoryService(
            self.db, self.inventory_ingest, clock, config.inventory_history_retention_seconds
        )
        self.channel.register_batch_handler(wire.MSG_INVENTORY_PART, self.inventory_ingest.on_parts)
        self.channel.register_batch_handler(wire.MSG_INVENTORY, self.inventory_ingest.on_summaries)
        self.compliance.on_changed = self.inventory_ingest.compliance_changed
        # Patch Manager (services/patching/): snapshots at send, baselines at delivery, the
        # node's Patch compliance kept from its patch inventory.
        self.patching = PatchService(self.db, clock, self.compliance)
        self.commands.patching = self.patching.snapshots
        self.dispatcher.patch_delivery = self.patching.snapshots.delivery
        for type_name in (schema.PATCH_SUMMARY, schema.PATCH):
            self.inventory_ingest.on_applied[type_name] = self.patching.reports.refresh
        self.groups = GroupService(self.db, clock)
        self.webhooks = WebhookService(self.db, self.events, clock, self.operators)
        self.node_events = NodeEventService(self.db, self.channel, self.events, clock)
        self.audit = AuditService(self.db, clock, config.data_dir)
        self.dispatcher.audit = self.audit  # late results are audited
        # State Manager (services/associations/) on the one scheduler (services/scheduling/).
        self.scheduler = Scheduler(Lease(self.db, clock), clock)
        self.association_runs = Runs(self.db, self.commands, clock)
        self.association_job = AssociationJob(
            self.db,
            self.association_runs,
            self.commands.check_run,
            self.presence,
            clock,
            self.compliance,
        )
        self.associations = AssociationService(
            self.db, self.commands, self.association_runs, clock, self._associations_changed
        )
        self.scheduler.add(self.association_job)
        self.association_job.wake = lambda: self.scheduler.wake(AssociationJob.name)
        self.events.listen(self.association_job.command_event)
        # Maintenance Windows and change calendars (services/windows/, services/calendars/).
        self.calendars = CalendarService(self.db, clock)
        self.windows = WindowService(self.db, self.commands, clock, self.scheduler.wake)
        self.window_job = WindowJob(self.db, self.commands, clock)
        self.scheduler.add(self.window_job)
        self.association_runs.calendars = self.calendars.closed_reason
        self.associations.check_calendars = self.calendars.check_names
        self.nodes.on_targeting_changed = self._associations_changed
        self.registration.on_registered = self._associations_changed
        # Session Manager (services/sessions/, the relay in control_plane/relay/).
        self.sessions = SessionService(
            self.db,
            self.channel,
            self.audit,
            config.data_dir / "blobs",
            clock,
            Preferences(
                idle_timeout=config.session_idle_timeout_seconds,
                max_duration=config.session_max_duration_seconds,
                run_as_default=config.session_run_as_default_user,
                recording=config.session_recording,
                resume_grace=config.session_resume_grace_seconds,
                connect_timeout=config.session_connect_timeout_seconds,
                max_live=config.session_max_open,
            ),
        )
        self.supervisor = Supervisor()
        self._keyring: KeyRing | None = None
        self._keyring_seen: float | None = None
        self.rate_limits = RateLimits(
            operator_rate=config.rate_limit_per_second,
            operator_burst=config.rate_limit_burst,
            node_rate=config.node_rate_limit_per_second,
            node_burst=config.node_rate_limit_burst,
        )
        self.ready = False

    async def start(self) -> None:
        async with self.db.read() as conn:
            generations = await node_store.generations(conn)
            pending = await messages.nodes_with_pending(conn)
        self.presence.load(generations, pending)
        await self.dispatcher.load()
        await self.operators.install_roles()
        await self.audit.signing_key()  # made now (mode 0600), not in the first request
        await self.packages.start()  # the package signing key, likewise
        await self.sessions.end_orphans()
        self.ready = True
        log.info("control plane started", extra={"nodes": len(generations)})

    async def run_background(self) -> None:
        """Every periodic task of the server, owned by one task group, each supervised: a
        loop that fails starts again after a backoff and never ends the group."""
        run = self.supervisor.run
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run("housekeeping", self._housekeeping), name="housekeeping")
            tg.create_task(
                run("channel-writer", lambda _passed: self.channel.run()), name="channel-writer"
            )
            tg.create_task(
                run("dispatcher", self.dispatcher.run, stale_after=DISPATCH_STALE_AFTER),
                name="dispatcher",
            )
            tg.create_task(run("webhooks", self.webhooks.run), name="webhooks")
            tg.create_task(run("scheduler", self.scheduler.run), name="scheduler")
            tg.create_task(run("audit", self._audit_upkeep), name="audit")
            tg.create_task(run("sessions", lambda _passed: self.sessions.run()), name="sessions")
            tg.create_task(
                run("parameter-policies", lambda _passed: self.parameters.run_policies()),
                name="parameter-policies",
            )

    def _associations_changed(self) -> None:
        """An association, or what a node is targeted by, changed: re-evaluate now."""
        self.association_job.changed()
        self.scheduler.wake()

    def keyring(self) -> KeyRing:
        """The SecureString key ring, read on first use (a server without SecureStrings needs
        none); ``corral-server keys`` changes it offline, so a restart picks changes up."""
        stamp = self._keyring_stamp()
        if self._keyring is None or stamp != self._keyring_seen:
            self._keyring = KeyRing.load(self.config.data_dir, clock=self.clock)
            self._keyring_seen = stamp
        return self._keyring

    def _keyring_stamp(self) -> float | None:
        """The key ring file's mtime: ``corral-server keys`` on a running server is seen at
        the next SecureString operation (an environment-supplied ring never changes)."""
        ring = self._keyring
        path = ring.path if ring is not None else self.config.data_dir / "keyring.json"
        try:
            return path.stat().st_mtime_ns / 1e9 if path is not None else None
        except OSError:
            return None

    async def _audit_upkeep(self, passed: Passed) -> None:
        """Sign the chain's head every interval (CloudTrail's hourly digest) and prune entries
        past the retention behind a signed checkpoint (a database error: the supervisor
        counts it and runs this again)."""
        while True:
            await asyncio.sleep(self.config.audit_sign_interval_seconds)
            try:
                await self.audit.sign_checkpoint()
                pruned = await self.audit.prune(self.config.audit_retention_seconds)
                if pruned:
                    log.info("audit entries past retention pruned", extra={"count": pruned})
            except CorralError as exc:  # a chain that does not verify is not pruned
                log.error("audit upkeep refused", extra={"error": exc.message})
            passed()

    async def _housekeeping(self, passed: Passed) -> None:
        """Flush last-seen times and prune processed message ids; a busy or unavailable
        database fails the pass (presence stays in memory), and the supervisor retries."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()
            async with self.db.transaction() as conn:
                await messages.prune_processed(conn, self.clock() - PROCESSED_RETENTION)
            await self.compliance.prune_if_due(self.clock())
            await self.inventory.prune_if_due(self.clock())
            await self.patching.snapshots.prune_if_due(self.clock())
            passed()

    async def flush(self) -> None:
        dirty = self.presence.take_dirty()
        if dirty:
            async with self.db.transaction() as conn:
                await node_store.update_last_seen(conn, dirty)

    def begin_shutdown(self) -> None:
        """Stop holding polls: every waiting agent gets an empty answer at once."""
        self.ready = False
        self.presence.shutting_down.set()
        self.presence.wake_all()

    async def stop(self) -> None:
        self.begin_shutdown()
        try:
            await self.sessions.close_all("the server shut down")
        except SQLAlchemyError as exc:
            log.warning("could not end the open sessions", extra={"error": str(exc)})
        await self.flush()
        try:
            await self.audit.sign_checkpoint()
        except SQLAlchemyError as exc:
            log.warning("could not sign the audit chain at shutdown", extra={"error": str(exc)})
        await self.db.close()


def _read_secret(config: ServerConfig) -> bytes:
    from control_plane.errors import SetupError

    try:
        key = config.secret_file.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read {config.secret_file}: {exc.strerror}") from None
    if len(key) < 32:
        raise SetupError(f"{config.secret_file} is corrupted (too short)")
    return key
