"""``corral-agent run``: the daemon's lifecycle.

Startup: load the registration, open the outbox, choose the transport.  Main loop, all inside
one task group: the poller (long-poll, handle server messages, ack them), the sender (drain the
outbox in bounded batches: agent/transport/sender.py), the heartbeat, the credential renewer,
the command executor (Run Command: its workers run outside the agent and outlive it; see
agent/execution/), and the local association scheduler (agent/associations/: a scheduled
association runs here by itself when the server has been out of reach since its slot; it
never wakes while the node holds none), and the session manager (Session Manager,
agent/sessions/: each session a task it owns; start_session and terminate_session return at
once; on stop every session ends and its processes are killed).  This module alone owns
signals: the first SIGTERM/SIGINT stops polling and flushes the outbox within a bounded
budget; a second one exits at once.  A revoked credential (node deregistered) ends the
daemon with exit code 3.

One server message that cannot be handled (whatever the exception) is logged with its id and
type, reported to the server as that message's failure (a run_command as a Failed invocation,
anything else as a node_event), acknowledged, and the daemon carries on: under systemd an
exception that ended the daemon would be a crash loop on the same redelivered message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any, cast

from agent import __version__, wire
from agent.associations import AssociationStore, LocalScheduler, open_store
from agent.backoff import Backoff
from agent.config import AgentConfig
from agent.credentials import Credentials
from agent.errors import AgentError, CredentialRevoked, TransportError
from agent.execution.executor import Executor, RebootSettings
from agent.execution.journal import Journal
from agent.execution.launcher import Launcher
from agent.execution.outcomes import describe_failure
from agent.execution.settings import worker_settings
from agent.outbox import Outbox
from agent.sessions.dial import agent_dial
from agent.sessions.endpoint import Dial
from agent.sessions.manager import SessionManager
from agent.state import Registration, load_registration, save_status, write_atomic
from agent.state_recovery import (
    Recovered,
    check_certificate,
    check_status_file,
    open_outbox,
    recover_ca,
)
from agent.transport import Transport
from agent.transport import load as load_transport
from agent.transport.sender import Sender
from agent.wire import Message

log = logging.getLogger("corral.agent")

RENEW_CHECK_SECONDS = 3600.0
# How often an idle sender looks at the outbox for rows another process put there
# (``corral-agent outbox retry-dead``).
OUTBOX_RESCAN_SECONDS = 10.0


def _rss_bytes() -> int | None:
    """This process's resident memory (None where the OS will not say)."""
    import psutil

    try:
        return int(psutil.Process().memory_info().rss)
    except (psutil.Error, OSError):
        return None


class Daemon:
    def __init__(
        self,
        config: AgentConfig,
        registration: Registration,
        launcher: Launcher | None = None,
        outbox: Outbox | None = None,
        transport: Transport | None = None,
        associations: AssociationStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.registration = registration
        self.node_id = registration.node_id
        self.outbox = outbox or Outbox(config.outbox_file)
        self.credentials = Credentials(config, registration)
        self.transport: Transport = transport or load_transport(config.transport)(
            config, self.credentials
        )
        self.sender = Sender(self.outbox, self.transport, self._backoff, self._contact)
        self.launcher = launcher or Launcher(worker_settings(config))
        self.executor = Executor(
            journal=Journal(config.commands_dir),
            outbox=self.outbox,
            transport=self.transport,
            launcher=self.launcher,
            node_id=self.node_id,
            reboot=RebootSettings(
                config.reboots_enabled, config.reboot_command, config.shutdown_budget_seconds
            ),
            backoff=self._backoff,
        )
        self.sessions = SessionManager(config, self._session_dial)
        self.stopping = asyncio.Event()
        self.renew_now = False  # the certificate was unreadable: renew at once
        self._seen: dict[str, float] = {}
        self._last_contact: float | None = None
        self._started = clock()
        # State files found unreadable at start, reported once the daemon runs.
        self._recovered: list[Recovered] = []
        if associations is None:
            associations, self._recovered = open_store(config, self._started)
        self.associations = associations
        self.scheduler = LocalScheduler(
            associations,
            self.executor,
            grace=config.association_offline_grace_seconds,
            contact_window=self.contact_window,
            last_contact=lambda: self._last_contact,
            started_at=self._started,
            clock=clock,
        )

    @property
    def contact_window(self) -> float:
        """No contact for this long: the server is out of reach.  Never shorter than a
        long-poll (a quiet, healthy link reports contact once per poll)."""
        return max(
            self.config.association_offline_grace_seconds, self.config.poll_wait_seconds + 10.0
        )

    @property
    def last_contact(self) -> float | None:
        """When the server last answered (a poll or a send), by ``clock``; None: not yet."""
        return self._last_contact

    def connected(self, now: float | None = None) -> bool:
        """Has the server answered within ``contact_window``?"""
        now = self.clock() if now is None else now
        return self._last_contact is not None and now - self._last_contact < self.contact_window

    # Loops ------------------------------------------------------------------------------
    async def poll_loop(self) -> None:
        backoff = self._backoff()
        acks: list[str] = []
        while True:
            try:
                messages = await self.transport.poll(acks, self.config.poll_wait_seconds)
            except CredentialRevoked:
                raise
            except TransportError as exc:
                delay = backoff.next_delay()
                log.warning(
                    "poll failed; retrying",
                    extra={"error": exc.message, "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)
                continue
            acks = []
            backoff.reset()
            self._contact()
            for message in messages:
                handled = await self.handle_safely(message)
                if handled is not None:
                    acks.append(handled)

    async def handle_safely(self, message: object) -> str | None:
        """Handle one server message, whatever goes wrong; the id to acknowledge, or None
        (no id; or its failure could not even be reported: then it comes again)."""
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            log.warning("ignoring a server message without an id")
            return None
        msg_id: str = message["id"]
        msg_type = str(message.get("type"))[:64]
        try:
            if not isinstance(message.get("body"), dict):
                raise ValueError("the message has no body object")
            await self.handle(cast(Message, message))
        except CredentialRevoked:
            raise
        except Exception as exc:  # one bad message must not end the daemon (see above)
            log.exception(
                "cannot handle a server message; reporting it",
                extra={"message_id": msg_id, "type": msg_type},
            )
            try:
                await self.executor.report_message_failure(message, describe_failure(exc, msg_type))
            except Exception:  # the outbox itself is failing: let the server send it again
                log.exception("cannot report the failure", extra={"message_id": msg_id})
                self._seen.pop(msg_id, None)
                return None
        return msg_id

    async def handle(self, message: Message) -> None:
        """Act on one server message; by return, whatever it asked for is durable."""
        if message["id"] in self._seen:
            return
        self._seen[message["id"]] = time.time()
        if len(self._seen) > 10_000:
            for old in sorted(self._seen, key=self._seen.__getitem__)[:5_000]:
                del self._seen[old]
        if message["type"] == wire.MSG_PING:
            pong = {"ping_id": message["id"][:64]}  # an id is at most 64 (wire.MESSAGE_ID_RE)
            await self.outbox.put(wire.make_message(wire.MSG_PONG, pong))
        elif message["type"] == wire.MSG_RUN_COMMAND:
            await self.executor.accept(message)
        elif message["type"] == wire.MSG_CANCEL_COMMAND:
            await self.executor.cancel(message["body"])
        elif message["type"] == wire.MSG_ASSOCIATIONS:
            await self._associations(message)
        elif message["type"] == wire.MSG_INVENTORY_RESYNC:
            await self._inventory_resync(message)
        elif message["type"] == wire.MSG_START_SESSION:
            self.sessions.start(message["body"])  # runs as the manager's task
        elif message["type"] == wire.MSG_TERMINATE_SESSION:
            self.sessions.terminate(message["body"])
        else:
            log.warning(
                "ignoring unknown message type",
                extra={"type": message["type"], "message_id": message["id"]},
            )

    async def _inventory_resync(self, message: Message) -> None:
        """The server lacks these types as this node last sent them: send them whole next
        time (the hashes go; the gathering finds them changed)."""
        from agent.inventory import upload

        raw = message["body"].get("types")
        types = [t for t in raw if isinstance(t, str)][:1000] if isinstance(raw, list) else []
        await asyncio.to_thread(upload.forget, self.outbox, types)
        log.info("inventory resync", extra={"types": ",".join(types)[:500]})

    async def _associations(self, message: Message) -> None:
        """Keep the set durably (before the message is acked), then let the scheduler look."""
        async with self.scheduler.lock:
            body = await asyncio.to_thread(self.associations.replace, message["body"], self.clock())
        log.info(
            "associations received",
            extra={
                "message_id": message["id"],
                "revision": body["revision"],
                "count": len(body["associations"]),
                "offline": len(self.associations.enforced()),
            },
        )
        self.scheduler.changed()

    async def send_loop(self) -> None:
        await self.sender.run(self.stopping, OUTBOX_RESCAN_SECONDS)

    async def flush_once(self) -> bool:
        """Send one batch; True if the server took or refused any of it."""
        return bool(await self.sender.flush_once())

    async def heartbeat_loop(self) -> None:
        from agent import facts

        while True:
            body: dict[str, Any] = await asyncio.to_thread(facts.collect)
            try:
                counts = await asyncio.to_thread(self.outbox.counts)
                body["outbox_depth"], body["outbox_dead"] = counts
                # The agent's own figures, shown by the server's /metrics per node.
                body["workers"] = self.executor.running
                rss = await asyncio.to_thread(_rss_bytes)
                if rss is not None:
                    body["rss_bytes"] = rss
                if self.associations.revision is not None:  # the set this node holds
                    body["associations_revision"] = self.associations.revision
                await self.outbox.put(wire.make_message(wire.MSG_HEARTBEAT, body))
            except (OSError, sqlite3.Error) as exc:  # a full disk: the next one may go
                log.warning("cannot queue the heartbeat", extra={"error": str(exc)})
            await asyncio.sleep(self.config.heartbeat_interval_seconds)

    async def fork_server_loop(self) -> None:
        """Stop the fork server when it has been idle for fork_server_idle_seconds."""
        idle = self.config.fork_server_idle_seconds
        if idle <= 0:
            return
        while True:
            await asyncio.sleep(min(idle / 4, 60.0))
            await asyncio.to_thread(self.launcher.release_idle)

    async def renew_loop(self) -> None:
        await self.credentials.recover_key()
        while True:
            if self.renew_now or self.credentials.renewal_due(time.time()):
                try:
                    await self.credentials.renew()
                    self.renew_now = False
                except CredentialRevoked:
                    raise
                except TransportError as exc:
                    log.warning(
                        "credential renewal failed; will retry", extra={"error": exc.message}
                    )
            await asyncio.sleep(RENEW_CHECK_SECONDS)

    def _session_dial(self, session_id: str) -> Dial:
        return agent_dial(self.config, self.credentials, session_id)

    # Lifecycle --------------------------------------------------------------------------
    def _backoff(self) -> Backoff:
        return Backoff(self.config.backoff_base_seconds, self.config.backoff_cap_seconds)

    def _contact(self) -> None:
        now = self.clock()
        if self._last_contact is None or now - self._last_contact > 5:
            self._last_contact = now
            status = {
                "pid": os.getpid(),
                "started_at": self._started,
                "last_contact": now,
                "agent_version": __version__,
            }
            try:
                save_status(self.config, status)
            except OSError as exc:  # a full disk: only `corral-agent status` misses it
                log.warning("cannot write the status file", extra={"error": str(exc)})

    def _on_signal(self) -> None:
        if self.stopping.is_set():
            log.warning("second signal: exiting at once")
            os._exit(1)
        log.info("stopping", extra={"node_id": self.node_id})
        self.stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        log.info(
            "agent started",
            extra={
                "node_id": self.node_id,
                "url": self.registration.url,
                "transport": self.config.transport,
                "outbox": self.outbox.depth(),
            },
        )
        for item in self._recovered:
            await self.outbox.put(item.event())
        self._recovered = []
        try:  # for Corral-UpdateAgent without a service manager (agent/updates/restart.py)
            write_atomic(self.config.pid_file, f"{os.getpid()}\n".encode())
        except OSError as exc:
            log.warning("cannot write the pid file", extra={"error": str(exc)})
        try:
            async with asyncio.TaskGroup() as tg:
                work = [
                    tg.create_task(self.poll_loop(), name="poll"),
                    tg.create_task(self.heartbeat_loop(), name="heartbeat"),
                    tg.create_task(self.renew_loop(), name="renew"),
                    tg.create_task(self.executor.run(), name="commands"),
                    tg.create_task(self.fork_server_loop(), name="fork-server"),
                    tg.create_task(self.scheduler.run(), name="associations"),
                    tg.create_task(self.sessions.run(), name="sessions"),
                ]
                sender = tg.create_task(self.send_loop(), name="send")
                await self.stopping.wait()
                for task in work:
                    task.cancel()
                sender.cancel()
                tg.create_task(self._final_flush(), name="final-flush")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.transport.aclose()
            await self.credentials.aclose()
            self.outbox.close()
        log.info("agent stopped", extra={"node_id": self.node_id})

    async def _final_flush(self) -> None:
        """Deliver what can be delivered within the shutdown budget; the rest stays on disk."""
        with contextlib.suppress(TimeoutError, AgentError, OSError, sqlite3.Error):
            async with asyncio.timeout(self.config.shutdown_budget_seconds):
                while await self.flush_once():
                    pass


def run(config: AgentConfig, launcher: Launcher | None = None) -> int:
    registration = load_registration(config)
    try:
        asyncio.run(_start(config, registration, launcher))
    except* CredentialRevoked as group:
        exc = group.exceptions[0]
        assert isinstance(exc, CredentialRevoked)
        log.error(
            "the server revoked this node's credential; stopping", extra={"reason": exc.message}
        )
        raise CredentialRevoked(
            f"{exc.message}: this node can no longer reach the server; register it again",
            exc.status,
            exc.code,
        ) from None
    return 0


async def _start(
    config: AgentConfig, registration: Registration, launcher: Launcher | None
) -> None:
    """Check the state dir (agent/state_recovery.py: an unreadable file that can be rebuilt is
    moved aside and rebuilt, and the server is told), then run."""
    backoff = Backoff(config.backoff_base_seconds, config.backoff_cap_seconds)
    recovered = check_status_file(config) + check_certificate(config)
    renew_now = bool(recovered and any(r.file == config.cert_file.name for r in recovered))
    recovered += await recover_ca(config, registration.url, registration.ca_hash, backoff)
    outbox, more = open_outbox(config)
    recovered += more
    daemon = Daemon(config, registration, launcher, outbox=outbox)
    daemon.renew_now = renew_now
    for item in recovered:
        await outbox.put(item.event())
    await daemon.run()
