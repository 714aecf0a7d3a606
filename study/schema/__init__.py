"""The sections of a study's YAML schema; `study.config` puts them together and loads them."""
