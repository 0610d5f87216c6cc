"""Run Command on the node: the agent's side and the document worker.

::

    agent (asyncio)                         fork server (forked first thing)     worker (setsid)
    ───────────────                         ────────────────────────────────     ───────────────
    executor.accept: journal, then ack  ──> launcher ──> fork ──────────────────> worker.run_worker
    executor.supervise: follow / re-attach                                        engine.DocumentRun
    executor.report: outbox, uploads          (exits when the agent goes)         plugins (one per
    executor.cancel: cancel.json + SIGUSR1                                          action)

- ``journal``: the command directories under ``<state dir>/commands/``, the claim that keeps a
  command from running twice, what the agent sees after a restart;
- ``executor``: journal, start, follow, re-attach, reboot, report (the agent's side);
- ``launcher`` / ``forkserver``: starting workers in milliseconds;
- ``worker``: the document worker process; ``engine``: SSM's step rules;
- ``local``: ``corral-agent run-document``.
"""
