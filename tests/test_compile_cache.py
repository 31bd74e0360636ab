"""The persistent compile cache (issue 17 item 4): which folder wins, and the caches it switches on."""
import os

import pytest
import torch._inductor.config as inductor_config

from sparseopt_edu.train import compile_cache


@pytest.fixture
def clean(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)  # restored after the test, whatever the call sets
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # config.patch restores both flags on exit (monkeypatch.setattr would delete Inductor's config entries)
    with inductor_config.patch(fx_graph_cache=False, autotune_local_cache=False):
        yield tmp_path


def test_default_folder_is_per_user_under_the_cache_home(clean):
    folder = compile_cache.enable_persistent_cache()
    assert folder == str(clean / "xdg" / "sparseopt-edu" / "inductor")
    assert os.path.isdir(folder) and os.environ[compile_cache.ENV] == folder
    assert inductor_config.fx_graph_cache and inductor_config.autotune_local_cache


def test_the_users_folder_is_kept(clean, monkeypatch):
    mine = clean / "mine"
    monkeypatch.setenv(compile_cache.ENV, str(mine))
    assert compile_cache.enable_persistent_cache() == str(mine)
    assert os.environ[compile_cache.ENV] == str(mine)


def test_an_explicit_path_wins(clean, monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, str(clean / "mine"))
    assert compile_cache.enable_persistent_cache(clean / "explicit") == str(clean / "explicit")


def test_an_unusable_folder_warns_and_changes_nothing(clean):
    blocker = clean / "file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="not usable"):
        assert compile_cache.enable_persistent_cache(blocker / "inductor") is None
    assert compile_cache.ENV not in os.environ and not inductor_config.fx_graph_cache


def test_counters_are_a_flat_dict():
    assert all(isinstance(v, int) for v in compile_cache.cache_counters().values())
