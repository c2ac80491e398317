"""corpusflow: transcripts and articles into Milvus, with versioned snapshots and lineage."""

import os as _os

# Offline-first (docs/architecture.md, decision 4), set before any library can read them:
# loading the embedder imports transformers, which imports comet_ml, which reads some of
# these once. The one list: the Makefile's exports and prefect.yaml's work-pool env are
# checked against it (tests/unit/test_offline_env.py), comet.COMET_ENV_DEFAULTS is its COMET_ part.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "COMET_ERROR_TRACKING_ENABLE": "false",  # no Sentry reports
    "COMET_DISABLE_ANNOUNCEMENT": "true",
    "COMET_DISABLE_AUTO_LOGGING": "1",  # no import hooks patching torch & co.
    "COMET_LOGGING_CONSOLE": "WARNING",  # `corpusflow comet sync` uploads offline archives
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE_ENV.items():
    _os.environ.setdefault(_key, _value)

from corpusflow.redact import install_log_redaction as _install_log_redaction  # noqa: E402

_install_log_redaction()  # every log line of the process, whichever library logs it

__version__ = "0.1.0"
