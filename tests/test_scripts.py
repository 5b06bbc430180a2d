"""The shell scripts of scripts/ that run where no test can follow them (the GPU machine).

A syntax error in gpu_check.sh or prebuild.sh would first show in a session with a
GPU, at the cost of its device time; so every script is parsed here, and the source
hash that decides whether a prebuilt extension may replace the build is checked to
follow the sources, and only them.
"""

import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "scripts", "*.sh")) + [os.path.join(ROOT, ".ci", "run")])

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.mark.parametrize("script", SCRIPTS, ids=[os.path.relpath(s, ROOT) for s in SCRIPTS])
def test_script_parses(script):
    r = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ext_hash_follows_the_extension_sources_only(tmp_path):
    # scripts/ext_hash.sh: gpu_check.sh takes .prebuilt/ only when the hash recorded by
    # prebuild.sh equals the tree's. It must change with any source of the extension
    # (csrc/, setup.py, the architecture choice setup.py loads) and with nothing else
    # (docs, the rest of the Python, tests).
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(ROOT, "csrc"), tree / "csrc")
    shutil.copy(os.path.join(ROOT, "setup.py"), tree / "setup.py")
    (tree / "resizeops" / "core").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "resizeops", "core", "_cuda_arch.py"), tree / "resizeops" / "core" / "_cuda_arch.py")
    (tree / "scripts").mkdir()
    shutil.copy(os.path.join(ROOT, "scripts", "ext_hash.sh"), tree / "scripts" / "ext_hash.sh")

    def digest():
        r = subprocess.run(["bash", str(tree / "scripts" / "ext_hash.sh")], capture_output=True, text=True)
        assert r.returncode == 0 and len(r.stdout.strip()) == 16, (r.stdout, r.stderr)
        return r.stdout.strip()

    base = digest()
    repo = subprocess.run(["bash", os.path.join(ROOT, "scripts", "ext_hash.sh")], capture_output=True, text=True)
    assert repo.stdout.strip() == base  # the copy hashes as the repo does (relative paths, sorted)
    (tree / "README.md").write_text("docs\n")
    (tree / "notes.py").write_text("x = 1\n")
    assert digest() == base
    header = tree / "csrc" / "include" / "resizeops" / "checks.h"
    original = header.read_text()
    header.write_text(original + "\n// changed\n")
    changed = digest()
    assert changed != base
    header.write_text(original)
    assert digest() == base
    (tree / "resizeops" / "core" / "ops.py").write_text("x = 1\n")
    assert digest() == base
    (tree / "setup.py").write_text((tree / "setup.py").read_text() + "\n# changed\n")
    changed_setup = digest()
    assert changed_setup not in (base, changed)
    arch = tree / "resizeops" / "core" / "_cuda_arch.py"
    arch.write_text(arch.read_text() + "\n# changed\n")
    assert digest() not in (base, changed, changed_setup)
