"""The one MetaData every table is declared on (store/schema.py and the capability modules
beside it, ``*_tables.py``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
