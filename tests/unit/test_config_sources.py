"""The "no sources named: use params.yaml's" rule, one function for the CLI and the flows."""

from __future__ import annotations

import pytest

from corpusflow.config import ConfigError, Sources, chosen_sources

PARAMS = Sources(transcripts=["data/raw/transcripts"], youtube=["dQw4w9WgXcQ"])


def test_named_inputs_win_over_params_even_if_only_one_kind_is_named():
    chosen = chosen_sources(PARAMS, None, ["news.csv"], None)
    assert chosen == (([], ["news.csv"], [], False))


def test_nothing_named_means_every_source_of_params():
    chosen = chosen_sources(PARAMS, [], [], [])
    assert chosen.transcripts == ["data/raw/transcripts"]
    assert chosen.articles == [] and chosen.youtube == ["dQw4w9WgXcQ"]
    assert chosen.from_params


@pytest.mark.parametrize(
    ("prefix", "shown"), [("", "give transcripts,"), ("--", "give --transcripts,")]
)
def test_nothing_anywhere_is_one_config_error_naming_the_options(prefix, shown):
    with pytest.raises(ConfigError, match="nothing to ingest") as err:
        chosen_sources(Sources(), option_prefix=prefix)
    assert shown in str(err.value) and "sources in params.yaml" in str(err.value)
