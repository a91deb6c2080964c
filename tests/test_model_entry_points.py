"""Models found through the entry point group ``dnnrsa.models`` (importlib.metadata):
the built-in model, a plugin's, and the errors that name a plugin that fails to load."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import entry_points

import pytest

from dnnrsa.models import (
    _BUILTIN,
    ENTRY_POINT_GROUP,
    ModelSpec,
    _entry_points,
    available_models,
    get_model,
)


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """An installed distribution declaring working and broken ``dnnrsa.models`` entries."""
    pkg = tmp_path / "dnnrsa_epcheck"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""\
        from dnnrsa.models import get_model

        def registration():
            return get_model("crosschannel")

        class holder:
            spec = get_model("crosschannel")

        def returns_int():
            return 3
        """)
    )
    (pkg / "broken.py").write_text("import dnnrsa_module_that_does_not_exist\n")
    info = tmp_path / "dnnrsa_epcheck-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dnnrsa_epcheck\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
        [{ENTRY_POINT_GROUP}]
        ep_ok = dnnrsa_epcheck:registration
        ep_nested = dnnrsa_epcheck:holder.spec
        ep_nomodule = dnnrsa_epcheck_missing:registration
        ep_noattr = dnnrsa_epcheck:missing
        ep_brokenimport = dnnrsa_epcheck.broken:registration
        ep_int = dnnrsa_epcheck:returns_int
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("dnnrsa_epcheck", "dnnrsa_epcheck.broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_the_builtin_model_loads_with_or_without_installed_metadata():
    """The built-in entry (used from a checkout without installed metadata) and the
    installed one name the same registration, and it gives the cross-channel CNN."""
    (builtin,) = _BUILTIN
    assert (builtin.name, builtin.group) == ("crosschannel", ENTRY_POINT_GROUP)
    installed = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "crosschannel"]
    assert all(ep.value == builtin.value for ep in installed)
    assert _entry_points()["crosschannel"].value == builtin.value
    spec = builtin.load()
    assert isinstance(spec, ModelSpec) and spec.name == "crosschannel"
    assert get_model("crosschannel") == spec


def test_plugins_load_and_a_broken_plugin_is_named(plugins):
    names = available_models()
    assert {"crosschannel", "ep_ok", "ep_nested", "ep_noattr"} <= set(names)
    for name in ("ep_ok", "ep_nested"):
        assert get_model(name).name == "crosschannel"
    messages = {
        "ep_nomodule": "from entry point 'dnnrsa_epcheck_missing:registration': No module named "
        "'dnnrsa_epcheck_missing'",
        "ep_noattr": "from entry point 'dnnrsa_epcheck:missing': module 'dnnrsa_epcheck' has no "
        "attribute 'missing'",
        "ep_brokenimport": "from entry point 'dnnrsa_epcheck.broken:registration': No module "
        "named 'dnnrsa_module_that_does_not_exist'",
    }
    for name, message in messages.items():
        with pytest.raises(ImportError) as info:
            get_model(name)
        assert str(info.value) == f"cannot load model {name!r} {message}"
    with pytest.raises(TypeError, match="'dnnrsa_epcheck:returns_int' for model 'ep_int' must"):
        get_model("ep_int")
    with pytest.raises(ValueError, match=r"model must be one of \['crosschannel'"):
        get_model("nosuchmodel")
