"""The one build step setup.cfg cannot say (everything else about the package is there).

The dashboard's templates/ and static/ live beside app/ in the repository, where their editors
look, and go into a built wheel as app/templates and app/static, package data of `app`: a
non-editable install (`pip install .`, as requirements.txt does for Heroku) serves the pages from
site-packages, with no source tree. app/pages.py looks inside the package first, then beside it (a
checkout, `pip install -e .`). MANIFEST.in puts both folders in the sdist, so a wheel built from
the sdist has them too (tests/test_package_data.py builds one and runs from it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PAGES = ("templates", "static")


class BuildPyWithPages(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them where they are
            return
        for name in PAGES:
            shutil.copytree(ROOT / name, Path(self.build_lib, "app", name), dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithPages})
