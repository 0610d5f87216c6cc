"""Parameter Store: hierarchical, versioned configuration and secrets.

service.py  put / get / get-by-path / history / labels / delete / policies
refs.py     the Parameter Store references a command pins at send
"""

from control_plane.services.parameters.service import ParameterService

__all__ = ["ParameterService"]
