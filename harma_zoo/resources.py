"""Where the project's data folders are: recipes/, registry/ and model_cards/."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The project's root in a checkout (the folder holding harma_zoo/ and recipes/); None in an installed wheel."""
    root = PACKAGE.parent
    return root if (root / "recipes").is_dir() and (root / "pyproject.toml").is_file() else None


def project_folder(name: str) -> Path:
    """``name`` beside the package in a checkout, or inside it in an installed wheel."""
    for candidate in (PACKAGE.parent / name, PACKAGE / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ folder beside or inside {PACKAGE}")


def recipe_path(name_or_path: str) -> Path:
    """A recipe file given as a path, or by its name in recipes/ (``harma_tiny-vit_rsicd``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    folder = project_folder("recipes")
    candidate = folder / f"{path.stem}.py"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in folder.glob("*.py"))
    raise FileNotFoundError(f"no recipe {name_or_path!r}: not a file, and not one of: {', '.join(known)}")


def project_recipe(name: str) -> Path:
    """The recipe called ``name`` in the project's recipes/ folder, and nothing else.

    For names read from a checkpoint or a registry entry: a recipe is Python and runs when read, so such
    a name must never reach a file elsewhere (an absolute path, ``../``) the way a user's argument may.
    """
    folder = project_folder("recipes")
    candidate = folder / f"{name}.py"
    if not name or Path(name).name != name or name.startswith(".") or not candidate.is_file():
        raise FileNotFoundError(f"no recipe named {name!r} in {folder}")
    return candidate
