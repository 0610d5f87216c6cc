"""Change calendars (SSM Change Calendar): DEFAULT_OPEN calendars whose events close them,
DEFAULT_CLOSED ones whose events open them; events from iCalendar or a schedule.

events.py  events as intervals (iCalendar, schedule + duration)   state.py  OPEN/CLOSED at a time
service.py create, read, closed_reason() for who is gated by calendars
"""

from control_plane.services.calendars.service import CalendarService
from control_plane.services.calendars.state import CLOSED, OPEN

__all__ = ["CLOSED", "OPEN", "CalendarService"]
