import os

import pytest

from genrec_core.config import load_settings
from genrec_core.errors import ConfigError


def test_defaults_validate():
    settings = load_settings()
    assert settings.model == "auto" and settings.k == 10 and settings.mult_vae.hidden_dim == 600
    assert settings.selection.candidates is None and settings.gate.compare_baselines
    assert settings.model_section() is None and settings.model_section("ease") is settings.ease


def test_the_docker_env_file_validates_and_serves_auto(monkeypatch):
    from genrec_core.dev.paths import PROJECT_ROOT

    for line in (PROJECT_ROOT / "docker" / "genrec.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name.strip(), value.strip())
    settings = load_settings()
    assert settings.model == "auto" and settings.score.shards == 4


def test_env_overrides_nested_and_flat(monkeypatch):
    monkeypatch.setenv("GENREC_K", "25")
    monkeypatch.setenv("GENREC_MULT_VAE__EPOCHS", "3")
    settings = load_settings()
    assert settings.k == 25 and settings.mult_vae.epochs == 3


def test_explicit_overrides_beat_env(monkeypatch):
    monkeypatch.setenv("GENREC_K", "25")
    assert load_settings(k=7).k == 7


def test_toml_file(tmp_path):
    path = tmp_path / "genrec.toml"
    path.write_text('model = "popularity"\nk = 5\n[mult_vae]\nlatent_dim = 32\n')
    settings = load_settings(path)
    assert (settings.model, settings.k, settings.mult_vae.latent_dim) == ("popularity", 5, 32)
    assert "GENREC_CONFIG" not in os.environ and load_settings().model == "auto"  # nothing leaks


def test_toml_file_from_env_and_env_beats_file(tmp_path, monkeypatch):
    path = tmp_path / "genrec.toml"
    path.write_text("k = 5\nlookback_days = 9\n")
    monkeypatch.setenv("GENREC_CONFIG", str(path))
    monkeypatch.setenv("GENREC_K", "6")
    settings = load_settings()
    assert (settings.k, settings.lookback_days) == (6, 9)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"k": 0}, "k"),
        ({"model": "bert4rec"}, "model"),
        ({"events_uri": "ftp://x"}, "events_uri"),
        ({"event_weights": {"like": 1.0}}, "event_weights"),
        ({"mult_vae": {"dropout": 1.5}}, "mult_vae.dropout"),
        ({"spark_mastr": "local"}, "spark_mastr"),
    ],
)
def test_bad_value_names_the_setting(override, name):
    with pytest.raises(ConfigError, match=f"setting '{name}'"):
        load_settings(**override)


def test_bad_env_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("GENREC_LOOKBACK_DAYS", "many")
    with pytest.raises(ConfigError, match="setting 'lookback_days'"):
        load_settings()


def test_secrets_are_masked_when_dumped():
    settings = load_settings(pg_dsn="postgresql://u:hunter2@h/db")
    assert "hunter2" not in str(settings.public_dict()) and "hunter2" not in repr(settings)


def test_score_and_train_sections_from_toml_env_and_overrides(tmp_path, monkeypatch):
    path = tmp_path / "genrec.toml"
    path.write_text("[score]\nshards = 3\nmin_history = 2\n[train]\nmode = 'retrain'\n")
    monkeypatch.setenv("GENREC_SCORE__CHUNK_SIZE", "128")
    settings = load_settings(path, train={"checkpoint_dir": "/ckpt"})
    assert (settings.score.shards, settings.score.min_history, settings.score.chunk_size) == (3, 2, 128)
    assert (settings.train.mode, settings.train.checkpoint_dir) == ("retrain", "/ckpt")


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ("score_shards", "score.shards", 2),
        ("train_mode", "train.mode", "retrain"),
        ("min_history", "score.min_history", 2),
    ],
)
def test_a_moved_setting_under_its_old_name_fails_naming_the_new_one(tmp_path, monkeypatch, old, new, value):
    with pytest.raises(ConfigError, match=f"setting '{old}' moved to '{new}'"):
        load_settings(**{old: value})
    path = tmp_path / "genrec.toml"
    path.write_text(f"{old} = {value!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=f"moved to '{new}'"):
        load_settings(path)
    monkeypatch.setenv(f"GENREC_{old.upper()}", str(value))
    section, field = new.split(".")
    with pytest.raises(ConfigError, match=f"GENREC_{old.upper()}.*GENREC_{section.upper()}__{field.upper()}"):
        load_settings()


def test_model_choices_and_sections_come_from_the_registry():
    from genrec_core.models.registry import model_specs

    settings = load_settings()
    for spec in model_specs():
        section = settings.model_section(spec.name)
        assert (section is None) == (spec.config_class is None)
        if section is not None:
            assert section == spec.default_config()
    with pytest.raises(ConfigError, match="unknown model 'nope'; expected 'auto' or one of"):
        load_settings(model="nope")


def test_updated_merges_a_section_and_validates_again():
    settings = load_settings()
    changed = settings.updated(score={"shards": 4}, k=5)
    assert (changed.score.shards, changed.score.min_history, changed.k) == (4, settings.score.min_history, 5)
    with pytest.raises(ValueError, match="shards"):
        settings.updated(score={"shards": 0})
