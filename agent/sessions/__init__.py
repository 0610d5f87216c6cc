"""Session Manager on the node (docs/sessions.md).

manager.py      SessionManager: start_session / terminate_session, the sessions' tasks
session.py      one session: dial first, then the program; how it ends
dial.py         the websocket to the server's relay, refusals read as close codes
endpoint.py     one end of the data channel over a websocket that may drop (datachannel.py)
program.py      the Program protocol, Refused, ``supervise`` (a child's life in a session)
shell.py        Standard_Stream and InteractiveCommands, in a PTY (fdio.py reads and writes it)
command.py      NonInteractiveCommands, with a pipe (piped.py)
port.py         Port: TCP connections per stream
processes.py    spawning and killing, per OS (_process_posix.py, _process_windows.py);
                runas.py: who a program runs as
recording.py    what the server's relay records of a shell session
"""
