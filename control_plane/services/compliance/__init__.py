"""Compliance (SSM's PutComplianceItems and the lists over it): see service.py."""

from control_plane.services.compliance.service import ComplianceService, HistoryPruning

__all__ = ["ComplianceService", "HistoryPruning"]
