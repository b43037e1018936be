"""Notebook settings come from defaults < [tool.probebook] < PROBEBOOK_* < %config."""

from probebook.kernel_ext.config import Probebook


def test_pyproject_then_environment_then_config(tmp_path, monkeypatch):
    project = tmp_path / "service"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.probebook]\ndefault_ttl = "7m"\nevidence-path = "inc.duckdb"\n')
    monkeypatch.chdir(project / "notebooks")  # found from a subdirectory too
    monkeypatch.delenv("PROBEBOOK_DEFAULT_TTL", raising=False)
    monkeypatch.delenv("PROBEBOOK_EVIDENCE", raising=False)
    settings = Probebook()
    assert (settings.default_ttl, settings.evidence_path, settings.default_wait) == ("7m", "inc.duckdb", "30s")
    monkeypatch.setenv("PROBEBOOK_DEFAULT_TTL", "9m")
    assert Probebook().default_ttl == "9m"
    overridden = Probebook()
    overridden.default_ttl = "2m"  # what %config does
    assert overridden.default_ttl == "2m"


def test_no_project_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROBEBOOK_DEFAULT_TTL", raising=False)
    assert Probebook().default_ttl == "15m"
