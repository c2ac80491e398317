"""The offline switches are one list: corpusflow.OFFLINE_ENV. The Makefile's exports and the
Prefect work pool's environment in prefect.yaml must say exactly the same, so a switch added
in one place and forgotten in another fails here, not as a phone-home in production."""

from __future__ import annotations

import re

import yaml

from conftest import REPO
from corpusflow import OFFLINE_ENV
from corpusflow.versioning.comet import COMET_ENV_DEFAULTS


def test_the_makefile_exports_exactly_the_offline_switches():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    exported = dict(re.findall(r"^export (\w+) :?= *(\S*)\s*$", makefile, re.M))
    assert exported == OFFLINE_ENV


def test_prefect_work_pool_env_is_exactly_the_offline_switches():
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    env = doc["definitions"]["work_pool"]["job_variables"]["env"]
    assert env == OFFLINE_ENV


def test_comet_defaults_are_the_comet_part_of_the_one_list():
    assert COMET_ENV_DEFAULTS == {k: v for k, v in OFFLINE_ENV.items() if k.startswith("COMET_")}
    assert COMET_ENV_DEFAULTS["COMET_DISABLE_AUTO_LOGGING"] == "1"
