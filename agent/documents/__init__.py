"""The Command document language (SSM-compatible): schema 2.2 (1.2 and 2.0 read for
compatibility), JSON or YAML, validated with a JSON Schema before anything runs.

Imported by the agent's document worker and by the server; PyYAML and jsonschema are imported
only when a document is parsed.  Every error is an ``agent.errors.DocumentError`` whose
``path`` names the place in the document (``mainSteps[1].inputs.runCommand: required``).

::

    text ──parse_document──> Document ──(server)── parse_param_args / resolve_parameters
                                 │                      ssm_references (Parameter Store hook)
    content ─document_from_content┘
                                 └─(worker, per step)── evaluate_precondition -> run/skip/fail
                                                        interpolate_step -> (inputs, env)
"""

from agent.documents._builtin import builtin_documents
from agent.documents._interpolation import interpolate_step, ssm_references
from agent.documents._loader import document_from_content, parse_document
from agent.documents._model import (
    DEFAULT_TIMEOUT_SECONDS,
    KNOWN_ACTIONS,
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    MISSING,
    Document,
    ParameterSpec,
    PreconditionResult,
    Step,
)
from agent.documents._parameters import nested_parameters, parse_param_args, resolve_parameters
from agent.documents._preconditions import evaluate_precondition
from agent.documents._steps import build_parameters

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "KNOWN_ACTIONS",
    "MAX_TIMEOUT_SECONDS",
    "MIN_TIMEOUT_SECONDS",
    "MISSING",
    "Document",
    "ParameterSpec",
    "PreconditionResult",
    "Step",
    "build_parameters",
    "builtin_documents",
    "document_from_content",
    "evaluate_precondition",
    "interpolate_step",
    "nested_parameters",
    "parse_document",
    "parse_param_args",
    "resolve_parameters",
    "ssm_references",
]
