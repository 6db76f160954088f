# Copies the Swift build's libNerveModel.so into the package, so `pip install ./python` gives a
# self-contained package once `swift build -c release` has run in the checkout above this folder.
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LIBRARY = "libNerveModel.so"


def built_library():
    explicit = os.environ.get("NERVE_LIBRARY")
    candidates = [Path(explicit)] if explicit else []
    candidates += [HERE.parent / ".build" / "release" / LIBRARY, HERE.parent / ".build" / "debug" / LIBRARY]
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(
        f"{LIBRARY} not found (looked at {', '.join(map(str, candidates))}): run `swift build -c release` "
        "in the Nerve checkout first, or set NERVE_LIBRARY to the library's path")


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "nerve" / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built_library(), target)


setup(cmdclass={"build_py": BuildWithLibrary})
