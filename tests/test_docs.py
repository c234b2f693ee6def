"""The documentation: the strict mkdocs build, the names on the "from PyTorch" page, the tour.

The build needs the docs tools (``pip install mkdocs mkdocstrings mkdocstrings-python``) and skips
without them; the name and tour checks need only tinydl and always run.
"""

import importlib
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

import tinydl
import tinydl.functional
import tinydl.layers
import tinydl.optim

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_PAGES = sorted((DOCS / "api").glob("*.md"))
DOCS_TOOLS = ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "griffe")


def _missing(modules):
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


# -- the strict build ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = _missing(DOCS_TOOLS)
    if missing:
        pytest.skip(f"docs tools not installed ({', '.join(missing)}): "
                    "pip install mkdocs mkdocstrings mkdocstrings-python")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    return out, result


def test_mkdocs_build_strict_has_no_warnings(site):
    _, result = site
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log


def test_functional_page_documents_the_ops(site):
    out, result = site
    assert result.returncode == 0, result.stdout + result.stderr
    page = (out / "api" / "functional.html").read_text()
    for op in ("tinydl.functional.conv.conv2d", "tinydl.functional.loss.cross_entropy",
               "tinydl.functional.reduction.max", "tinydl.functional.activation.softmax"):
        assert f'id="{op}"' in page, f"{op} is missing from the functional reference"
    # a NumPy-style Parameters section is rendered as a table, not left as raw text
    assert "Parameters:" not in page or "doc-section-title" in page
    assert "----------" not in page


@pytest.mark.parametrize("page", API_PAGES, ids=lambda p: p.stem)
def test_every_api_page_renders_objects(site, page):
    out, result = site
    assert result.returncode == 0, result.stdout + result.stderr
    html = (out / "api" / f"{page.stem}.html").read_text()
    for target in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M):
        assert f'id="{target}"' in html, f"{target} did not render on {page.name}"
    assert html.count('class="doc doc-heading"') >= 3, f"{page.name} documents almost nothing"


def test_adamw_shows_its_signature_with_its_defaults(site):
    """``AdamW.__init__ = with_defaults(Adam.__init__, weight_decay=1e-2)`` is read statically:
    the extension gives it Adam's parameters with the new default."""
    out, result = site
    assert result.returncode == 0, result.stdout + result.stderr
    html = (out / "api" / "optim.html").read_text()
    start = html.index('id="tinydl.optim.AdamW"')
    section = re.sub(r"<[^>]+>", "", html[start:html.index('class="doc doc-heading"', start + 50)])
    assert "weight_decay: float = 0.01" in section and "lr: float = 0.001" in section, section


def test_doctests_render_as_code(site):
    out, result = site
    assert result.returncode == 0, result.stdout + result.stderr
    html = (out / "api" / "data.html").read_text()
    # Bare ">>>" lines would become nested block quotes in Markdown; fenced, they are code.
    assert "<blockquote" not in html
    start = html.index('id="tinydl.data.TensorDataset"')
    section = html[start:html.index('class="doc doc-heading"', start + 50)]
    assert '<div class="highlight"><pre><span></span><code><span class="gp">&gt;&gt;&gt; ' in section


# -- the doctest fences of the Griffe extension ----------------------------------------------


def _docs_extension():
    missing = _missing(["griffe"])
    if missing:
        pytest.skip("griffe is not installed (it comes with mkdocstrings-python)")
    spec = importlib.util.spec_from_file_location(
        "tinydl_docs_ext", DOCS / "_griffe" / "tinydl_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fence_doctests_wraps_blocks_and_trims_flags():
    ext = _docs_extension()
    text = "Intro.\n>>> a = f(1)  # doctest: +SKIP\n>>> a[1][1]\n2\n\nAfter."
    assert ext.fence_doctests(text) == (
        "Intro.\n\n```pycon\n>>> a = f(1)\n>>> a[1][1]\n2\n```\n\nAfter.")


def test_fence_doctests_leaves_fenced_code_alone():
    ext = _docs_extension()
    text = "```python\n>>> x\n```\nNo doctest here."
    assert ext.fence_doctests(text) == text


def test_hidden_specials():
    ext = _docs_extension()
    assert ext.is_hidden_special("__repr__") and ext.is_hidden_special("__slots__")
    assert not ext.is_hidden_special("__init__") and not ext.is_hidden_special("__getitem__")
    assert not ext.is_hidden_special("forward") and not ext.is_hidden_special("_private")


# -- pages that need no docs tools -----------------------------------------------------------


@pytest.mark.parametrize("page", API_PAGES, ids=lambda p: p.stem)
def test_api_page_targets_import(page):
    targets = re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)
    assert targets, f"{page.name} has no ::: directive"
    for target in targets:
        importlib.import_module(target)


def test_api_pages_cover_the_packages():
    documented = {t for p in API_PAGES for t in re.findall(r"^::: ([\w.]+)", p.read_text(), re.M)}
    for name in ("tinydl.autograd", "tinydl.layers", "tinydl.optim", "tinydl.data",
                 "tinydl.metrics", "tinydl.io", "tinydl.gradcheck", "tinydl.testing",
                 "tinydl.training", "tinydl.recipes.classifier"):
        assert name in documented
    functional = {m.stem for m in (ROOT / "tinydl" / "functional").glob("[!_]*.py")}
    assert functional, "no functional modules found"
    missing = {m for m in functional if f"tinydl.functional.{m}" not in documented}
    assert not missing, f"functional modules without a reference section: {sorted(missing)}"


# The prefixes the "from PyTorch" page uses for tinydl names. Module attributes set in
# __init__ (``training``) exist on instances only, so Module names resolve on an instance.
PREFIXES = {
    "tinydl": lambda: tinydl,
    "td": lambda: tinydl,
    "F": lambda: tinydl.functional,
    "nn": lambda: tinydl.layers,
    "optim": lambda: tinydl.optim,
    "data": lambda: tinydl.data,
    "metrics": lambda: tinydl.metrics,
    "T": lambda: tinydl.data.transforms,
    "init": lambda: tinydl.layers.init,
    "Tensor": lambda: tinydl.Tensor,
    "Module": lambda: tinydl.layers.Module(),
    "Optimizer": lambda: tinydl.optim.Optimizer,
    "dist": lambda: importlib.import_module("tinydl.distributed"),  # not imported by tinydl
}


def _table_rows(markdown: str):
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and not set(cells[0]) <= {"-", " "}:
            yield cells


def _tinydl_names():
    rows = list(_table_rows((DOCS / "from_pytorch.md").read_text()))
    assert rows[0][:2] == ["PyTorch", "tinydl"], rows[0]
    names = []
    for torch_cell, tinydl_cell, _ in rows[1:]:
        spans = re.findall(r"`([^`]+)`", tinydl_cell)
        assert spans, f"row for {torch_cell} names no tinydl object"
        names.extend(spans)
    return names


def _resolve(name: str):
    head, *rest = name.split(".")
    assert head in PREFIXES, f"{name!r}: unknown prefix {head!r} (known: {sorted(PREFIXES)})"
    obj = PREFIXES[head]()
    for part in rest:
        obj = getattr(obj, part)
    return obj


def test_from_pytorch_names_resolve():
    names = _tinydl_names()
    assert len(names) >= 80, f"only {len(names)} names found: is the table still parsed?"
    for required in ("td.tensor", "td.grad", "td.Function", "td.gradcheck", "td.save", "td.load",
                     "td.no_grad", "td.manual_seed", "F.conv2d", "F.cross_entropy",
                     "Tensor.backward", "Tensor.detach", "Tensor.item", "Module.state_dict"):
        assert required in names, f"{required} is missing from the from-PyTorch table"
    unresolved = []
    for name in names:
        try:
            _resolve(name)
        except AttributeError as e:
            unresolved.append(f"{name}: {e}")
    assert not unresolved, "names on docs/from_pytorch.md that tinydl lacks:\n" + "\n".join(
        unresolved)


def test_resolve_rejects_a_wrong_name():
    with pytest.raises(AttributeError):
        _resolve("F.conv3d")
    with pytest.raises(AssertionError):
        _resolve("torch.tensor")


def test_documented_code_runs(tmp_path, monkeypatch):
    """The Python blocks of the home page and the from-PyTorch page run as written."""
    monkeypatch.chdir(tmp_path)  # the tour saves model.safetensors
    for page in ("index.md", "from_pytorch.md"):
        blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
        assert blocks, f"{page} has no python block"
        namespace = {}
        for block in blocks:
            exec(compile(block, f"docs/{page}", "exec"), namespace)
    assert (tmp_path / "model.safetensors").exists()
